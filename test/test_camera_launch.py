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

"""segment.launch.py's ``cameras:=`` argument: parsed into names and checked before start."""

from launch import LaunchContext
from launch.actions import DeclareLaunchArgument
from launch_helpers import require_launch
import pytest

require_launch()

from espnet_ros.ros.launching import (LaunchArgumentError, parameter_arguments,  # noqa: E402
                                      parameter_overrides, parameter_overrides_for_cameras)

SINGLE_CAMERA = {'image': 'image', 'camera_info': ''}


def context_with(**given: str) -> LaunchContext:
    """Return a launch context with the parameter and topic arguments declared, some given."""
    context = LaunchContext()
    for argument in [*parameter_arguments(), *(
            DeclareLaunchArgument(name, default_value=default)
            for name, default in SINGLE_CAMERA.items())]:
        argument.execute(context)
    context.launch_configurations.update(given)
    return context


@pytest.mark.parametrize('text, names', [
    ('[front,rear]', ['front', 'rear']),
    ('[front, rear/left]', ['front', 'rear/left']),
    ("['front', \"rear\"]", ['front', 'rear']),
    ('front', ['front']),
])
def test_cameras_argument_becomes_a_list_of_names(text: str, names: list) -> None:
    assert parameter_overrides(context_with(cameras=text)) == {'cameras': names}


def test_an_empty_cameras_argument_overrides_nothing() -> None:
    assert parameter_overrides(context_with(cameras='[]')) == {}


@pytest.mark.parametrize('text, message', [
    ('[front,front]', "'front' is named twice"),
    ('[front,/rear]', 'must be relative'),
    ('[front,2nd]', 'not a valid ROS name'),
    ('[front,]', 'is empty'),
])
def test_bad_cameras_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(LaunchArgumentError) as raised:
        parameter_overrides(context_with(cameras=text))
    assert message in str(raised.value) and f'cameras:={text!r}' in str(raised.value)


def test_a_single_camera_topic_beside_cameras_is_refused() -> None:
    context = context_with(cameras='[front,rear]', image='/front/image_raw')
    overrides = parameter_overrides(context)
    with pytest.raises(LaunchArgumentError, match='image:= applies to the single camera'):
        parameter_overrides_for_cameras(context, overrides, SINGLE_CAMERA)
    context = context_with(cameras='[front,rear]')
    parameter_overrides_for_cameras(context, parameter_overrides(context), SINGLE_CAMERA)
    context = context_with(image='/front/image_raw')
    parameter_overrides_for_cameras(context, parameter_overrides(context), SINGLE_CAMERA)
