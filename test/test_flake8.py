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
ament_flake8: 99 columns, single quotes, google import order with espnet_ros imports last.

The configuration is ament's own, extended by application-import-names in setup.cfg's
[flake8] section so that the local package forms its own import block.
"""

import os
from pathlib import Path

from ament_flake8.main import main_with_errors
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKED = ('espnet_ros', 'test', 'launch', 'setup.py')


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every Python file of the package passes ament_flake8."""
    # ament_flake8 derives its excludes from the working directory.
    monkeypatch.chdir(REPO_ROOT)
    paths = [p for p in CHECKED if os.path.exists(p)]
    rc, errors = main_with_errors(argv=['--config', 'setup.cfg', *paths])
    assert rc == 0, 'Found %d code style errors / warnings:\n' % len(errors) + '\n'.join(errors)
