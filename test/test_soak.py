# Copyright 2026 The espnet_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""``espnet-ros-soak``: a short soak over DDS, and the verdict's arithmetic."""

import argparse
from dataclasses import replace
import json
from pathlib import Path
import subprocess
import sys

import pytest
from ros_helpers import child_env, REPO_ROOT

from espnet_ros.tools.soak import parse_args, Sample, verdict

FRAMES, EVERY = 300, 30
# A safety net against a hung run, not a speed figure.
SOAK_TIMEOUT_S = 1800


def test_short_soak_levels_off(weights_dir: Path, tmp_path: Path) -> None:
    """300 frames at a tiny size: memory and threads level off, no frame is lost."""
    report = tmp_path / 'soak.json'
    command = [sys.executable, '-m', 'espnet_ros.tools.soak', '--frames', str(FRAMES),
               '--model', 'espnet_p2q3_cityscapes', '--size', '128x64',
               '--camera-size', '96x64', '--device', 'cpu', '--outputs', 'labels,overlay',
               '--report-every', str(EVERY), '--namespace', '/soak_test',
               '--log', str(tmp_path / 'segmenter.log'), '--json', str(report)]
    done = subprocess.run(command, cwd=REPO_ROOT, env=child_env(weights_dir),
                          capture_output=True, text=True, timeout=SOAK_TIMEOUT_S)
    print(done.stdout)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    content = json.loads(report.read_text())
    result, samples = content['verdict'], content['samples']
    assert done.returncode == (0 if result['passed'] else 1)
    assert [sample['frames'] for sample in samples] == list(range(EVERY, FRAMES + 1, EVERY))
    assert all(sample['rss_mb'] > 50 and sample['threads'] > 1 for sample in samples)
    assert result['warmup_frames'] == FRAMES // 10
    assert result['memory_ok'] and result['threads_ok'], result
    assert result['frames_ok'] and result['lost_frames'] <= 3, result
    assert result['exit_ok'] and result['node_exit_status'] == 0, result
    assert 0 < result['latency_early_median_ms'] < 1000
    assert 0 < result['latency_late_median_ms'] < 1000
    # The table is printed as the soak goes.
    assert done.stdout.count('\n') >= FRAMES // EVERY + 2
    assert 'soak PASSED' in done.stdout or 'soak FAILED' in done.stdout


def samples_with(rss: list[float], threads: list[int]) -> list[Sample]:
    """Return one sample every 100 frames (at 50, 150, ...) with these RSS and threads."""
    return [Sample(100 * index + 50, float(index), mb, count, 10.0, 12.0, 30.0, 25.0, 0)
            for index, (mb, count) in enumerate(zip(rss, threads))]


def arguments(frames: int = 1000) -> argparse.Namespace:
    """Return the soak's default settings for ``frames`` frames."""
    return parse_args(['--frames', str(frames)])


def test_verdict_passes_a_flat_run() -> None:
    """Flat memory, threads and latency pass; the warm-up's growth does not count."""
    rss = [300.0] + [400.0] * 9   # the first sample is before the warm-up ends
    result = verdict(samples_with(rss, [20] + [23] * 9), [10.0] * 1000, arguments())
    assert result['passed'] and result['rss_growth_mb'] == 0 and result['threads_growth'] == 0


@pytest.mark.parametrize('rss,threads,latencies,failed', [
    ([400.0 + 8 * i for i in range(10)], [23] * 10, [10.0] * 1000, 'memory_ok'),
    ([400.0] * 10, [23 + i for i in range(10)], [10.0] * 1000, 'threads_ok'),
    ([400.0] * 10, [23] * 10, [10.0 + i / 20 for i in range(1000)], 'latency_ok'),
    ([400.0] * 10, [23] * 10, [10.0] * 980 + [float('nan')] * 20, 'frames_ok'),
])
def test_verdict_catches_leaks_drift_and_losses(rss: list[float], threads: list[int],
                                                latencies: list[float], failed: str) -> None:
    """Growing memory, a thread per block, latency creeping up or lost frames fail."""
    samples = samples_with(rss, threads)
    lost = sum(value != value for value in latencies)
    samples[-1] = replace(samples[-1], lost=lost)
    result = verdict(samples, latencies, arguments())
    assert not result['passed'] and not result[failed], result
    assert sum(not result[key] for key in ('memory_ok', 'threads_ok', 'latency_ok',
                                           'frames_ok')) == 1, result
