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

"""
Fast DDS shared-memory segments whose process has gone: found and removed.

Each Fast DDS participant keeps a segment in /dev/shm (``fastrtps_<id>``, up to the
profile's 32 MiB of RAM) and holds an exclusive ``flock`` on its ``fastrtps_<id>_el`` file
while it lives. A process that is killed (the tests kill nodes on purpose) leaves both
behind, and tmpfs keeps them in memory until someone removes them: on a machine that ran
the suite many times they filled its RAM. ``fastdds shm clean`` does this job where the
Fast DDS tools are installed; the wheels here do not carry them, hence this small copy of
its rule: a segment is stale when its lock file can be locked.
"""

import fcntl
import os
from pathlib import Path
import re
import time

SHM_FOLDER = Path('/dev/shm')
SEGMENT = re.compile(r'^fastrtps_[0-9a-f]+$')
LOCK_SUFFIX = '_el'
# A lock file younger than this may belong to a participant still being created.
MIN_AGE_S = 60.0


def _owner_gone(lock_file: Path) -> bool:
    """Return True if no process holds ``lock_file``'s lock (checked without keeping it)."""
    try:
        descriptor = os.open(lock_file, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live participant holds it
    else:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return True
    finally:
        os.close(descriptor)


def remove_stale_segments(folder: Path = SHM_FOLDER, min_age_s: float = MIN_AGE_S) -> int:
    """Remove this user's Fast DDS segments whose owner has gone; return how many."""
    removed = 0
    now = time.time()
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        if not SEGMENT.match(name):
            continue
        segment, lock_file = folder / name, folder / (name + LOCK_SUFFIX)
        try:
            status = lock_file.lstat()
        except OSError:
            continue
        if status.st_uid != os.getuid() or now - status.st_mtime < min_age_s:
            continue
        if _owner_gone(lock_file):
            for path in (segment, lock_file):
                try:
                    path.unlink()
                except OSError:
                    pass
            removed += 1
    return removed
