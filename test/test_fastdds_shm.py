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

"""The suite removes the shared memory of dead Fast DDS participants, never a live one's."""

import os
from pathlib import Path
import subprocess
import sys
import time

from fastdds_shm import LOCK_SUFFIX, MIN_AGE_S, remove_stale_segments

HOLD_LOCK = ('import fcntl, os, sys, time\n'
             'descriptor = os.open(sys.argv[1], os.O_RDONLY)\n'
             'fcntl.flock(descriptor, fcntl.LOCK_EX)\n'
             'print("locked", flush=True)\n'
             'time.sleep(120)\n')


def segment(folder: Path, name: str, age_s: float) -> tuple[Path, Path]:
    """Make a segment and its lock file, ``age_s`` old."""
    paths = (folder / name, folder / (name + LOCK_SUFFIX))
    stamp = time.time() - age_s
    for path in paths:
        path.write_bytes(b'\0' * 16)
        os.utime(path, (stamp, stamp))
    return paths


def test_only_segments_without_a_living_owner_are_removed(tmp_path: Path) -> None:
    old = 2 * MIN_AGE_S
    dead = segment(tmp_path, 'fastrtps_00aa', old)
    alive = segment(tmp_path, 'fastrtps_00bb', old)
    young = segment(tmp_path, 'fastrtps_00cc', 0.0)
    other = tmp_path / 'fastrtps_port7411'  # a port's segment: not a participant's
    other.write_bytes(b'\0')
    owner = subprocess.Popen([sys.executable, '-c', HOLD_LOCK, str(alive[1])],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == 'locked'
        assert remove_stale_segments(tmp_path) == 1
        assert not any(path.exists() for path in dead)
        assert all(path.exists() for path in alive + young) and other.exists()
    finally:
        owner.kill()
        owner.wait()
    # Its owner gone, the live one's segment is stale too.
    assert remove_stale_segments(tmp_path) == 1
    assert not any(path.exists() for path in alive)
