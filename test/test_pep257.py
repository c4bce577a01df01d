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

"""Docstring style: ament_pep257 everywhere, plus docstrings on the package's public API."""

import os
from pathlib import Path

from ament_pep257.main import main
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKED = ('espnet_ros', 'test', 'launch', 'setup.py')
# ament's convention lets docstrings be missing; the project wants them on the public modules,
# classes, functions and packages of espnet_ros (methods such as forward() are described by
# their class).
PUBLIC_DOCSTRINGS = ['D100', 'D101', 'D103', 'D104']


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every docstring follows the ament pep257 convention."""
    monkeypatch.chdir(REPO_ROOT)
    rc = main(argv=['--', *(p for p in CHECKED if os.path.exists(p))])
    assert rc == 0, 'Found code style errors / warnings'


@pytest.mark.linter
@pytest.mark.pep257
def test_public_docstrings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every public module, class and function of espnet_ros has a docstring."""
    monkeypatch.chdir(REPO_ROOT)
    rc = main(argv=['--add-select', *PUBLIC_DOCSTRINGS, '--', 'espnet_ros'])
    assert rc == 0, 'Found public definitions without a docstring'
