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
Files that fetch and train write get the mode any new file gets: the umask's, not 0600.

A node running as another user on the robot reads the checkpoints and model folders.
"""

import os
from pathlib import Path
import stat
from typing import Iterator

import pytest

from espnet_ros.training.model_folder import save_state, write_json
from espnet_ros.zoo import checkpoints

UMASK = 0o022
EXPECTED_MODE = 0o644


@pytest.fixture
def usual_umask() -> Iterator[None]:
    old = os.umask(UMASK)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_fetched_checkpoint_honours_the_umask(usual_umask: None, tmp_path: Path) -> None:
    source = tmp_path / 'source'
    (source / 'espnet').mkdir(parents=True)
    (source / 'espnet' / 'model.pth').write_bytes(b'weights')
    sha256 = checkpoints.sha256_of(source / 'espnet' / 'model.pth')
    (fetched,) = checkpoints.fetch([('espnet/model.pth', 'unused', sha256)], tmp_path / 'dest',
                                   source_dir=source)
    assert mode(fetched) == EXPECTED_MODE
    assert not list(fetched.parent.glob('*.partial'))


def test_model_folder_files_honour_the_umask(usual_umask: None, tmp_path: Path) -> None:
    write_json(tmp_path / 'manifest.json', {'a': 1})
    save_state(tmp_path / 'model.pth', {'weight': 1})
    assert mode(tmp_path / 'manifest.json') == EXPECTED_MODE
    assert mode(tmp_path / 'model.pth') == EXPECTED_MODE
    assert not list(tmp_path.glob('*.partial'))
