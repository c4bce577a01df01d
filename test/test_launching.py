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

"""The launch files' shared parts: arguments from the parameter table, checked and typed."""

from launch import LaunchContext
from launch_helpers import require_launch
import pytest

require_launch()

from espnet_ros.ros.launching import (camera_info_topic, LaunchArgumentError,  # noqa: E402
                                      parameter_arguments, parameter_overrides)
from espnet_ros.ros.parameter_table import PARAMETERS  # noqa: E402


def context_with(**given: str) -> LaunchContext:
    """Return a launch context where the parameter arguments are declared and some given."""
    context = LaunchContext()
    for argument in parameter_arguments():
        argument.execute(context)
    context.launch_configurations.update(given)
    return context


def test_one_argument_per_parameter_in_table_order() -> None:
    """Every node parameter is a launch argument, described from the table."""
    arguments = parameter_arguments()
    assert [argument.name for argument in arguments] == [spec.name for spec in PARAMETERS]
    for argument, spec in zip(arguments, PARAMETERS):
        assert argument.description.startswith(spec.description)
        assert all(choice in argument.description for choice in spec.choices or ())


def test_not_given_leaves_params_file_alone() -> None:
    """Arguments left at their default override nothing."""
    assert parameter_overrides(context_with()) == {}


def test_given_arguments_are_typed_by_the_table() -> None:
    """Text becomes the parameter's type: int, float (also from '5'), bool, str."""
    overrides = parameter_overrides(context_with(
        input_width='512', max_rate='5', publish_confidence='True', device='cpu'))
    assert overrides == {'input_width': 512, 'max_rate': 5.0, 'publish_confidence': True,
                         'device': 'cpu'}
    assert type(overrides['max_rate']) is float


@pytest.mark.parametrize('given, message', [
    ({'input_width': '5.5'}, "input_width:='5.5' is not an integer"),
    ({'input_width': '5000'}, 'input_width must be in [0, 4096]'),
    ({'overlay_alpha': 'half'}, "overlay_alpha:='half' is not a number"),
    ({'publish_color': 'yes'}, "publish_color:='yes' is not true or false"),
    ({'backend': 'tensorrt'}, 'backend must be one of auto, torch, torch-compile, onnxruntime'),
    ({'device': 'gpu'}, 'device must be auto, cpu, cuda or cuda:N'),
])
def test_bad_values_are_refused_with_the_reason(given: dict, message: str) -> None:
    """A bad value is refused naming the argument, the value and what is allowed."""
    with pytest.raises(LaunchArgumentError) as raised:
        parameter_overrides(context_with(**given))
    assert message in str(raised.value)
    assert ' a int' not in str(raised.value)


@pytest.mark.parametrize('image, expected', [
    ('/front/image_raw', '/front/camera_info'),
    ('front/image_raw', 'front/camera_info'),
    ('/image', '/camera_info'),
    ('image', 'camera_info'),
    ('/a/b/image_rect/', '/a/b/image_rect/camera_info'),
])
def test_camera_info_sits_beside_the_image(image: str, expected: str) -> None:
    """The CameraInfo topic is the image topic's sibling, as image_transport has it."""
    assert camera_info_topic(image) == expected
