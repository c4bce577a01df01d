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


"""A checkout folder named espnet_ros beside a script must not hide the installed package."""

from pathlib import Path
import subprocess
import sys

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import espnet_ros
from espnet_ros.runtime.options import parse_size
print(espnet_ros.__file__)
print(parse_size('640x0'))
"""


@pytest.fixture
def beside_checkout(tmp_path: Path) -> Path:
    """Return a folder holding a checkout-like ``espnet_ros/`` (no __init__.py) and a script."""
    checkout = tmp_path / 'espnet_ros'
    (checkout / 'scripts').mkdir(parents=True)
    (checkout / 'README.md').write_text('# espnet_ros\n')
    (tmp_path / 'shared').mkdir()
    (tmp_path / 'use_it.py').write_text(SCRIPT)
    return tmp_path


@pytest.mark.parametrize('how', ['script', 'python -c'])
def test_script_beside_a_checkout_imports_the_package(beside_checkout: Path, how: str) -> None:
    """The script's folder (and the current folder of ``python -c``) comes first on sys.path."""
    command = [sys.executable, 'use_it.py'] if how == 'script' else [
        sys.executable, '-c', SCRIPT]
    done = subprocess.run(command, cwd=beside_checkout, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    package_file, size = done.stdout.split('\n')[:2]
    assert Path(package_file) == REPO_ROOT / 'espnet_ros' / '__init__.py'
    assert size == '(640, 0)'
