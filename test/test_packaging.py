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
The package builds with colcon as in a ROS 2 workspace and installs what launch needs.

The build (conftest.py's colcon_install, shared with test_launch_files.py, which runs
``ros2 launch`` from this install) runs colcon from this Python environment (colcon-core,
colcon-ros, colcon-python-setup-py) into a temporary directory; no sourced ROS is needed.
"""

import os
from pathlib import Path
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

from launch_helpers import require_launch, ros2_executable, sourced
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = 'espnet_ros'
EXECUTABLES = ('segmenter', 'image_player', 'espnet-ros')


@pytest.fixture(scope='module')
def install_dir(colcon_install: Path) -> Path:
    """Return the install prefix of the session's colcon build (conftest.py)."""
    return colcon_install


def test_package_manifest_installed(install_dir: Path) -> None:
    """share/espnet_ros/package.xml is installed and names the package."""
    manifest = install_dir / 'share' / PACKAGE / 'package.xml'
    assert ElementTree.parse(manifest).getroot().findtext('name') == PACKAGE


def test_ament_index_marker(install_dir: Path) -> None:
    """The ament index registers the package, so ros2 run/launch can find it."""
    marker = install_dir / 'share' / 'ament_index' / 'resource_index' / 'packages' / PACKAGE
    assert marker.is_file()


@pytest.mark.parametrize('name', EXECUTABLES)
def test_executables_in_libexec(install_dir: Path, name: str) -> None:
    """Console scripts land in lib/espnet_ros, where ros2 run looks for them."""
    script = install_dir / 'lib' / PACKAGE / name
    assert script.is_file() and os.access(script, os.X_OK), f'{script} missing'


@pytest.mark.parametrize('folder, pattern', [
    ('launch', '*.launch.py'),
    ('config', '*.xml'),
    ('models', '*.json'),
])
def test_share_data_installed(install_dir: Path, folder: str, pattern: str) -> None:
    """Every launch, config and model-manifest file of the tree is installed under share/."""
    installed = install_dir / 'share' / PACKAGE / folder
    assert installed.is_dir(), f'share/{PACKAGE}/{folder} not installed'
    expected = sorted(p.name for p in (REPO_ROOT / folder).glob(pattern))
    assert expected, f'no {pattern} file in {folder}/ to install'
    assert sorted(p.name for p in installed.glob(pattern)) == expected


def test_python_package_installed(install_dir: Path) -> None:
    """The Python package is installed into the site-packages of the install prefix."""
    site = install_dir / 'lib' / f'python{sys.version_info.major}.{sys.version_info.minor}'
    assert (site / 'site-packages' / PACKAGE / '__init__.py').is_file()


def test_sourced_install_is_what_ros2_finds(install_dir: Path) -> None:
    """After sourcing the install, ros2 finds the package there and Python imports its copy."""
    require_launch()
    env = {name: value for name, value in os.environ.items()
           if name not in ('AMENT_PREFIX_PATH', 'PYTHONPATH')}
    script = ('import espnet_ros, subprocess, sys; print(espnet_ros.__file__); '
              'sys.stdout.flush(); subprocess.run([sys.argv[1], "pkg", "prefix", "espnet_ros"])')
    result = subprocess.run(sourced(install_dir, [sys.executable, '-c', script,
                                                  ros2_executable()]),
                            env=env, capture_output=True, text=True, timeout=120,
                            cwd=install_dir.parents[1])  # the workspace, not this checkout
    assert result.returncode == 0, result.stdout + result.stderr
    module, prefix = result.stdout.split()
    assert Path(module).is_relative_to(install_dir), module
    assert Path(prefix) == install_dir
