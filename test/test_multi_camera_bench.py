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

"""``espnet-ros-live --cameras N``: the three set-ups run, and the table and JSON say so."""

import json
from pathlib import Path
import subprocess
import sys

import pytest
from ros_helpers import child_env

pytestmark = pytest.mark.slow  # starts players and nodes three times

RUN_TIMEOUT_S = 1200  # three set-ups, each loading torch and a model on two busy cores
COMMAND = [sys.executable, '-m', 'espnet_ros.tools.live_run', '--model',
           'espnet_c_p2q3_cityscapes', '--size', '256x128', '--camera-size', '160x120',
           '--rate', '4.0', '--threads', '1', '--device', 'cpu', '--precision', 'fp32',
           '--namespace', '/bench_cameras']


def test_three_set_ups_measured_in_one_run(camvid_dir: Path, weights_dir: Path,
                                           tmp_path: Path) -> None:
    out = tmp_path / 'cameras.json'
    done = subprocess.run([*COMMAND, '--source', str(camvid_dir / 'val'), '--cameras', '2',
                           '--seconds', '3', '--json', str(out)], env=child_env(weights_dir),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    results = json.loads(out.read_text())
    setups = results['setups']
    assert list(setups) == ['batched', 'max_batch 1', 'separate nodes']
    assert [setup['processes'] for setup in setups.values()] == [1, 1, 2]
    for name, setup in setups.items():
        assert sorted(setup['cameras']) == ['cam0', 'cam1'], name
        assert all(camera['frames'] > 0 for camera in setup['cameras'].values()), name
        assert setup['resident_mib'] > 0 and setup['total_fps'] > 0, name
        assert name in done.stdout  # a row of the table
    assert 'fps total' in done.stdout and 'RSS MiB' in done.stdout


@pytest.mark.parametrize('count', ['-1', '17'])
def test_a_camera_count_out_of_range_is_refused(camvid_dir: Path, count: str) -> None:
    done = subprocess.run([*COMMAND, '--source', str(camvid_dir / 'val'), '--cameras', count],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and '--cameras must be 0 (one camera) to 16' in done.stderr, (
        done.stderr)
