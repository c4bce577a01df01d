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
What the launch files share: arguments from the node's parameter table, checked before start.

Every parameter of :mod:`espnet_ros.ros.parameter_table` is a launch argument of the same
name, with the table's description and choices; one given on the command line overrides
``params_file``. The launch files check every argument before they start any process, so a
bad value ends the launch with one line and leaves nothing running; a node of ours that exits
with an error ends the launch, non-zero, with its status and its last error line.
"""

import os
from pathlib import Path
from typing import Any, Optional

from ament_index_python.packages import get_package_prefix, PackageNotFoundError
from launch import LaunchContext, Substitution
from launch.action import Action
from launch.actions import (DeclareLaunchArgument, ExecuteProcess, RegisterEventHandler,
                            SetEnvironmentVariable)
from launch.event_handlers import OnProcessExit, OnProcessIO
from launch.events.process import ProcessExited, ProcessIO
from launch.substitutions import LaunchConfiguration

from espnet_ros.ros.parameter_table import check_parameter, PARAMETERS, ParameterSpec
from espnet_ros.zoo import DATA_ENV, MODELS_ENV
from espnet_ros.zoo.checkpoints import env_folders, source_models_dir

# Launch's own words for a true or false argument (launch.conditions reads these).
TRUE_WORDS = ('true', '1')
FALSE_WORDS = ('false', '0')
KIND_WORDS = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'text',
              tuple: 'names, e.g. [obstacle, person]'}
RVIZ_PACKAGE = 'rviz2'
# A node's log lines that say why it failed.
ERROR_MARKERS = ('[ERROR]', '[FATAL]', 'Error:', 'Exception:')


class LaunchArgumentError(ValueError):
    """A launch argument that cannot be used; raised before any process starts."""


class ParamsFileValue(Substitution):
    """The default of a parameter argument: empty, which leaves the parameter to params_file."""

    def describe(self) -> str:
        """Say where the value comes from, as ``ros2 launch --show-args`` prints it."""
        return 'the value in params_file'

    def perform(self, context: LaunchContext) -> str:
        """Return the empty text that means 'not given'."""
        return ''


def argument_description(spec: ParameterSpec) -> str:
    """Return a parameter's description with its type and its choices or range."""
    if spec.choices:
        allowed = f'one of: {", ".join(spec.choices)}'
    elif spec.limits:
        allowed = f'{KIND_WORDS[type(spec.default)]} from {spec.limits[0]} to {spec.limits[1]}'
    else:
        allowed = KIND_WORDS[type(spec.default)]
    return f'{spec.description} ({allowed})'


def parameter_arguments() -> list[DeclareLaunchArgument]:
    """Return one launch argument per node parameter; empty leaves it to params_file."""
    return [DeclareLaunchArgument(spec.name, default_value=[ParamsFileValue()],
                                  description=argument_description(spec))
            for spec in PARAMETERS]


def parse_bool(name: str, text: str) -> bool:
    """Return a true/false launch argument's value; refuse anything else, naming it."""
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS:
        return False
    raise LaunchArgumentError(f'launch argument {name}:={text!r} is not true or false')


def parse_names(text: str) -> tuple[str, ...]:
    """Return the names of a string-array argument: '[a, b]' or 'a,b' ('[]': none)."""
    inner = text.strip()
    if inner.startswith('[') and inner.endswith(']'):
        inner = inner[1:-1]
    return tuple(part.strip().strip('\'"') for part in inner.split(',') if part.strip())


def parse_parameter(spec: ParameterSpec, text: str) -> Any:
    """Return the parameter value a launch argument's text gives; refuse it with the reason."""
    kind = type(spec.default)
    if kind is bool:
        value = parse_bool(spec.name, text)
    elif kind is tuple:
        value = parse_names(text)
    else:
        try:
            value = kind(text)
        except ValueError:
            raise LaunchArgumentError(f'launch argument {spec.name}:={text!r} is not '
                                      f'{KIND_WORDS[kind]}') from None
    reason = check_parameter(spec.name, value)
    if reason:
        raise LaunchArgumentError(f'launch argument {spec.name}:={text!r}: {reason}')
    return value


def parameter_overrides(context: LaunchContext) -> dict[str, Any]:
    """Return the parameters whose launch arguments were given, checked and typed."""
    overrides = {}
    for spec in PARAMETERS:
        text = LaunchConfiguration(spec.name).perform(context)
        if text != '':
            value = parse_parameter(spec, text)
            # launch_ros types a list of strings as a string array.
            overrides[spec.name] = list(value) if isinstance(value, tuple) else value
    return overrides


def model_registry(context: LaunchContext) -> list[Action]:
    """
    Put the model folders of the ``model_registry`` argument first on ``$ESPNET_ROS_MODELS``.

    For the launch's own checks (a user model named by ``model:=`` is known once its folder
    is) and for the node, which reads the variable. Call it before the parameters are
    checked; it returns the action that sets the variable for the processes started after.
    """
    text = LaunchConfiguration('model_registry').perform(context)
    folders = [str(Path(part).expanduser()) for part in text.split(os.pathsep) if part]
    for folder in folders:
        if not Path(folder).is_dir():
            raise LaunchArgumentError(f'launch argument model_registry: {folder!r} is not a '
                                      'folder (a model folder that espnet-ros train wrote)')
    if not folders:
        return []
    value = os.pathsep.join(folders + [part for part in os.environ.get(
        MODELS_ENV, '').split(os.pathsep) if part])
    os.environ[MODELS_ENV] = value  # this launch process checks model:= against it
    return [SetEnvironmentVariable(MODELS_ENV, value)]


def model_registry_argument() -> DeclareLaunchArgument:
    """Return the ``model_registry`` launch argument."""
    return DeclareLaunchArgument(
        'model_registry', default_value='',
        description=f'model folders (separated by {os.pathsep}) to find user models in, '
                    f'before ${MODELS_ENV}: what espnet-ros train --out wrote')


def existing_file(name: str, context: LaunchContext) -> str:
    """Return the path a file argument names; refuse one that is not a file."""
    path = LaunchConfiguration(name).perform(context)
    if not Path(path).is_file():
        raise LaunchArgumentError(f'launch argument {name}:={path!r} is not a file')
    return path


def existing_path(name: str, context: LaunchContext) -> str:
    """Return the path an argument names; refuse one that does not exist."""
    path = LaunchConfiguration(name).perform(context)
    if not path or not Path(path).exists():
        raise LaunchArgumentError(f'launch argument {name}:={path!r} does not exist')
    return path


def rviz_requested(context: LaunchContext) -> bool:
    """Return use_rviz; refuse true where rviz2 is not installed."""
    if not parse_bool('use_rviz', LaunchConfiguration('use_rviz').perform(context)):
        return False
    try:
        get_package_prefix(RVIZ_PACKAGE)
    except PackageNotFoundError:
        raise LaunchArgumentError(
            f'use_rviz:=true but {RVIZ_PACKAGE} is not installed (package {RVIZ_PACKAGE!r} not '
            f'found); install it (ros-<distro>-{RVIZ_PACKAGE}) or set use_rviz:=false') from None
    return True


# The demo's frames without source:=: the CamVid val frames of $ESPNET_ROS_DATA (played
# through the CamVid model), else the frames `espnet-ros fetch --samples` wrote.
SHARED_FRAMES = Path('camvid', 'val')
SHARED_FRAMES_MODEL = 'espnet_p2q8_camvid'
SAMPLES_DIR = 'samples'
FETCH_SAMPLES = 'espnet-ros fetch --model espnet_p2q8_cityscapes --samples'


def demo_frames(source: str) -> tuple[str, Optional[str]]:
    """
    Return the demo's frames and the model that suits them (None: the params_file's).

    ``source`` given must exist. Without it, the CamVid frames of ``$ESPNET_ROS_DATA`` (which
    ``scripts/activate.sh`` points at this project's shared data), else the sample frames
    ``espnet-ros fetch --samples`` put in a models folder; with neither, the error names the
    command that fetches them.
    """
    if source:
        if not Path(source).expanduser().exists():
            raise LaunchArgumentError(f'launch argument source:={source!r} does not exist')
        return str(Path(source).expanduser()), None
    data = os.environ.get(DATA_ENV)
    shared = Path(data) / SHARED_FRAMES if data else None
    if shared is not None and shared.is_dir():
        return str(shared), SHARED_FRAMES_MODEL
    for folder in [*env_folders(), source_models_dir()]:
        samples = folder / SAMPLES_DIR
        if samples.is_dir() and any(samples.iterdir()):
            return str(samples), None
    raise LaunchArgumentError(
        f'no sample frames to play: fetch them once with `{FETCH_SAMPLES}` (needs the '
        'network), or give source:=FOLDER_OR_VIDEO')


def camera_info_topic(image: str) -> str:
    """Return the CameraInfo topic beside an image topic, as image_transport names it."""
    namespace, slash, _ = image.rpartition('/')
    return f'{namespace}/camera_info' if slash else 'camera_info'


class NodeFailed(RuntimeError):
    """One of the launched nodes exited with an error; the launch ends non-zero."""


def end_launch_on_failure(process: ExecuteProcess) -> list[Action]:
    """
    Return handlers that end the launch when ``process`` exits non-zero, saying why.

    Launch ends with status 1 and stops the other processes when an event handler raises;
    the message carries the process's exit status and the last error line it printed.
    """
    last_error: dict[str, str] = {}

    def on_output(event: ProcessIO) -> None:
        for line in event.text.decode(errors='replace').splitlines():
            if any(marker in line for marker in ERROR_MARKERS):
                last_error['line'] = line.strip()

    def on_exit(event: ProcessExited, context: LaunchContext) -> Optional[list[Action]]:
        if event.returncode == 0 or context.is_shutdown:
            return None
        why = last_error.get('line', 'see its output above')
        raise NodeFailed(f'{event.action.name} exited with status {event.returncode}: {why}')

    return [RegisterEventHandler(OnProcessIO(target_action=process, on_stdout=on_output,
                                             on_stderr=on_output)),
            RegisterEventHandler(OnProcessExit(target_action=process, on_exit=on_exit))]
