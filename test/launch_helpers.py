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
Helpers for the tests that run the launch files for real: ``ros2 launch`` and ``launch_test``.

Every launch a test starts carries a marker in its environment, which its processes
inherit; after the test, :func:`leftovers` finds any of them still in the process table.
"""

import os
from pathlib import Path
import shutil
import subprocess
import sys
from typing import Optional, Sequence
import uuid

import psutil
import pytest

from espnet_ros.tools.live_run import stop

MARKER_VARIABLE = 'ESPNET_ROS_LAUNCH_TEST'
WHY_NO_LAUNCH = ('launch/launch_ros/ros2launch are not installed: source a ROS 2 install, or '
                 'run scripts/setup_env.sh with ../shared/wheels beside the checkout')
EXIT_TIMEOUT_S = 90.0


def require_launch() -> None:
    """Skip, saying why, where the ROS launch packages are not installed."""
    pytest.importorskip('launch_ros', reason=WHY_NO_LAUNCH)
    pytest.importorskip('ros2launch', reason=WHY_NO_LAUNCH)


def executable(name: str) -> str:
    """Return a ROS command beside this Python (the venv's), else the one on PATH."""
    found = shutil.which(name, path=f'{Path(sys.executable).parent}{os.pathsep}'
                         f'{os.environ.get("PATH", "")}')
    if found is None:
        pytest.skip(WHY_NO_LAUNCH)
    return found


def ros2_executable() -> str:
    """Return the ros2 command."""
    return executable('ros2')


def new_marker() -> str:
    """Return a fresh marker for one launch's processes."""
    return uuid.uuid4().hex


def launch_env(marker: str, weights_dir: Optional[Path]) -> dict[str, str]:
    """Return the environment of a launch: the session's DDS isolation, the marker, weights."""
    env = {**os.environ, MARKER_VARIABLE: marker, 'PYTHONUNBUFFERED': '1'}
    if weights_dir is not None:
        env['ESPNET_ROS_MODELS'] = str(weights_dir)
    return env


def sourced(prefix: Path, command: Sequence[str]) -> list[str]:
    """
    Return ``command`` run after sourcing the colcon install's setup script, as users do.

    ``prefix`` is the package's install prefix (install/espnet_ros); colcon writes setup.sh
    one level up. The script puts the prefix on AMENT_PREFIX_PATH and its site-packages on
    PYTHONPATH, so the launch runs the installed launch files and the installed package.
    """
    return ['sh', '-c', '. "$0" && exec "$@"', str(prefix.parent / 'setup.sh'), *command]


def leftovers(marker: str) -> list[str]:
    """Return the command lines of live processes carrying ``marker`` (this one aside)."""
    found = []
    for process in psutil.process_iter(['pid', 'cmdline', 'status']):
        if process.pid == os.getpid() or process.info['status'] == psutil.STATUS_ZOMBIE:
            continue
        try:
            if process.environ().get(MARKER_VARIABLE) == marker:
                found.append(f'{process.pid}: {" ".join(process.info["cmdline"] or [])}')
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def kill_leftovers(marker: str) -> None:
    """Kill what a failed test left running, so the next test starts clean."""
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and process.environ().get(MARKER_VARIABLE) == marker:
                process.kill()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue


def run_launch(prefix: Path, arguments: Sequence[str], env: dict[str, str],
               timeout_s: float) -> subprocess.CompletedProcess:
    """Run ``ros2 launch`` from the install at ``prefix`` to its end; return status, output."""
    return subprocess.run(sourced(prefix, [ros2_executable(), 'launch', *arguments]), env=env,
                          capture_output=True, text=True, timeout=timeout_s)


def start_launch(prefix: Path, arguments: Sequence[str], env: dict[str, str],
                 log_path: Path) -> subprocess.Popen:
    """Start ``ros2 launch`` from the install at ``prefix``, its output in ``log_path``."""
    with open(log_path, 'w') as log:
        return subprocess.Popen(sourced(prefix, [ros2_executable(), 'launch', *arguments]),
                                env=env, stdout=log, stderr=subprocess.STDOUT)


def interrupt(process: subprocess.Popen) -> Optional[int]:
    """Stop a launch like Ctrl-C; return its exit status (kill it if it hangs)."""
    return stop(process, EXIT_TIMEOUT_S)
