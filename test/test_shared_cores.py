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

"""Thread count, OpenMP wait policy and background load: steady inference on a busy CPU."""

import json
import os
from pathlib import Path
import subprocess
import sys
import time

import pytest

from espnet_ros.cli import main as cli_main
from espnet_ros.ros.parameter_table import check_parameter
from espnet_ros.runtime.options import (auto_threads, MAX_THREADS, resolve_threads,
                                        threads_error, usable_cores)
from espnet_ros.tools import benchmark, live_run, variants
from espnet_ros.tools.background_load import BackgroundLoad, load_error

# How long a started busy process gets to show that it runs (or does not).
SETTLE_S = 0.5


def run_python(code: str, **environment: str) -> str:
    """Run ``code`` in a fresh interpreter with extra environment; return its stdout."""
    env = {key: value for key, value in os.environ.items()
           if key not in ('OMP_WAIT_POLICY', 'KMP_BLOCKTIME')}
    env.update(environment)
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def cpu_ticks(pid: int) -> int:
    """Return the user plus system clock ticks process ``pid`` has used."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])


def state(pid: int) -> str:
    """Return the one-letter scheduler state of process ``pid``."""
    return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[0]


@pytest.mark.parametrize('cores,expected', [(1, 1), (2, 1), (3, 1), (8, 4), (64, 32)])
def test_auto_threads_leave_half_the_cores(cores: int, expected: int) -> None:
    assert auto_threads(cores) == expected


def test_thread_counts_are_checked_once_for_node_and_command_line() -> None:
    assert resolve_threads(0) == auto_threads() == max(1, usable_cores() // 2)
    assert resolve_threads(3) == 3
    for bad in (-1, MAX_THREADS + 1, True, '2', 1.0):
        assert threads_error(bad) is not None
        assert check_parameter('threads', bad) is not None
        with pytest.raises(ValueError, match='threads must be an integer'):
            resolve_threads(bad)
    assert check_parameter('threads', 0) is None and check_parameter('threads', 4) is None


def test_passive_wait_is_set_before_openmp_loads_and_never_after() -> None:
    code = ('import os\n'
            'from espnet_ros.runtime.process import openmp_loaded, wait_passively\n'
            'before = openmp_loaded()\n'
            'first = wait_passively()\n'
            'import torch\n'
            'torch.zeros(64, 64) @ torch.zeros(64, 64)\n'
            'print(before, first, openmp_loaded(), wait_passively(), '
            'os.environ["OMP_WAIT_POLICY"], os.environ["KMP_BLOCKTIME"])')
    assert run_python(code) == 'False True True False PASSIVE 0'
    # The user's own setting wins.
    assert run_python(code, OMP_WAIT_POLICY='ACTIVE').endswith('ACTIVE 0')


def test_segmenter_entry_point_sets_the_policy_before_torch_loads() -> None:
    """The console script's module loads neither torch nor OpenMP before it sets the policy."""
    code = ('import sys\n'
            'import espnet_ros.ros.segmenter_main\n'
            'from espnet_ros.runtime.process import openmp_loaded\n'
            "print('torch' in sys.modules, openmp_loaded())")
    assert run_python(code) == 'False False'
    assert live_run.node_command('segmenter', '/x', {})[1:3] == [
        '-m', 'espnet_ros.ros.segmenter_main']


def test_use_threads_sets_torch_for_threads_started_later() -> None:
    code = ('import threading, torch\n'
            'from espnet_ros.runtime.process import use_threads\n'
            'count = use_threads(1)\n'
            'seen = []\n'
            'thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))\n'
            'thread.start(); thread.join()\n'
            'print(count, torch.get_num_threads(), seen[0])')
    assert run_python(code) == '1 1 1'


def test_background_load_spins_only_when_busy_and_ends_with_its_owner() -> None:
    with BackgroundLoad(1) as load:
        (process,) = load.processes
        time.sleep(SETTLE_S)
        assert state(process.pid) == 'T' and not load.loaded  # paused at start
        paused = cpu_ticks(process.pid)
        time.sleep(SETTLE_S)
        assert cpu_ticks(process.pid) == paused
        load.busy()
        time.sleep(SETTLE_S)
        assert load.loaded and state(process.pid) == 'R'
        assert cpu_ticks(process.pid) > paused
        load.quiet()
        time.sleep(SETTLE_S)
        assert state(process.pid) == 'T'
    assert process.poll() is not None and load.running() == 0


def test_background_load_is_bounded() -> None:
    assert load_error(-1) and load_error(usable_cores() + 1)
    assert load_error(0) is None and load_error(usable_cores()) is None
    with pytest.raises(ValueError, match='background load'):
        BackgroundLoad(usable_cores() + 1)
    # Each process also ends by itself after its time limit.
    load = BackgroundLoad(1, limit_s=0.2)
    load.busy()
    load.processes[0].wait(30)
    assert load.running() == 0
    load.close()


def test_round_robin_times_quiet_and_loaded_alternately() -> None:
    with BackgroundLoad(1) as load:
        seen: list[bool] = []

        def timer(kind: str) -> float:
            seen.append(load.loaded)
            return 1.0
        prepared = [variants.Prepared(variants.baseline('cpu'), timer, list, None, None,
                                      {kind: [] for kind in variants.KINDS})
                    for _ in range(2)]
        benchmark.time_round_robin(prepared, 3, load)
        assert not load.loaded
    per_phase = 2 * len(variants.KINDS)
    phases = [seen[start] for start in range(0, len(seen), per_phase)]
    assert phases == [True, False, False, True, True, False]
    for item in prepared:
        assert item.times_ms == {'network': [1.0] * 3, 'frame': [1.0] * 3,
                                 'network loaded': [1.0] * 3, 'frame loaded': [1.0] * 3}


def test_bench_reports_quiet_and_loaded_rows(tmp_path: Path, weights_dir: Path,
                                             cityscapes_image: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / 'bench.json'
    args = ['bench', '--model', 'espnet_c_p2q3_cityscapes', '--size', '128x64', '--device',
            'cpu', '--backend', 'onnxruntime', '--repeats', '2', '--warmup', '1',
            '--weights-dir', str(weights_dir), '--json', str(out), '--camera', '256x128',
            '--images', str(cityscapes_image), '--threads', '1', '--background-load', '1']
    assert cli_main(args) == 0
    rows = json.loads(out.read_text())
    quiet = [row for row in rows if row['background_load'] == 0]
    loaded = [row for row in rows if row['background_load'] == 1]
    # The anchors (baseline, and it as loaded) and onnxruntime; network and frame.
    assert len(quiet) == len(loaded) == 6
    assert all(row['threads'] == 1 for row in rows)
    for row in loaded:
        twin = next(other for other in quiet
                    if (other['variant'], other['kind']) == (row['variant'], row['kind']))
        assert row['quiet_median_ms'] == twin['median_ms']
        assert row['loaded_over_quiet'] == pytest.approx(row['median_ms'] / twin['median_ms'])
        assert row['p99_over_quiet_median'] == pytest.approx(row['p99_ms'] / twin['median_ms'])
    assert 'quiet and with 1 busy cores' in capsys.readouterr().out


def test_bench_refuses_more_load_than_cores(capsys: pytest.CaptureFixture) -> None:
    assert cli_main(['bench', '--background-load', str(usable_cores() + 1)]) == 2
    assert 'background load must be' in capsys.readouterr().err


def test_live_summary_splits_quiet_and_loaded_frames() -> None:
    probe = type('Recorded', (), {})()
    probe.latencies_ms = [100.0] * 3 + [10.0, 20.0, 30.0] + [500.0] * 2 + [40.0, 60.0]
    probe.arrivals = [float(index) for index in range(len(probe.latencies_ms))]
    probe.node_processing_ms = 5.0
    probe.node_counts = {}
    quiet = live_run.summary(probe, 3, 6)
    loaded = live_run.summary(probe, 8)
    assert (quiet['frames'], quiet['latency_median_ms']) == (3, 20.0)
    assert (loaded['frames'], loaded['latency_median_ms']) == (2, 50.0)
    ratios = live_run.load_ratios(quiet, loaded)
    assert ratios['loaded_over_quiet'] == 2.5
    assert ratios['loaded_p99_over_quiet_median'] == pytest.approx(loaded['latency_p99_ms'] / 20)
