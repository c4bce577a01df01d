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
segment.launch.py under launch_pytest, the pytest-native ROS launch test framework.

The installed launch file is included in a launch service run by the test process; the
test plays a camera in the namespace and waits for labels there; after the launch is shut
down, nothing it started may be left in the process table.
"""

import os
from pathlib import Path
from typing import Any, Iterator

from launch_helpers import kill_leftovers, leftovers, MARKER_VARIABLE, new_marker, require_launch
import numpy as np
import pytest
from ros_helpers import camera_image, header_at, Probe, START_TIMEOUT_S
from sensor_msgs.msg import Image

require_launch()
launch_pytest = pytest.importorskip('launch_pytest', reason='launch_pytest is not installed')

NAMESPACE = 'lp'
SEND_PERIOD_S = 0.5
MARKER = new_marker()


@pytest.fixture(scope='module')
def launch_environment(colcon_install: Path, weights_dir: Path) -> Iterator[Path]:
    """Point ament at the install and mark every process the launch starts."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv('AMENT_PREFIX_PATH', os.pathsep.join(
            part for part in (str(colcon_install), os.environ.get('AMENT_PREFIX_PATH')) if part))
        patch.setenv('ESPNET_ROS_MODELS', str(weights_dir))
        patch.setenv(MARKER_VARIABLE, MARKER)
        yield colcon_install
    kill_leftovers(MARKER)


@launch_pytest.fixture(scope='module')
def segment_launch(launch_environment: Path) -> Any:
    """Return the installed segment.launch.py with a small model, in a namespace."""
    from launch import LaunchDescription
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    launch_file = launch_environment / 'share' / 'espnet_ros' / 'launch' / 'segment.launch.py'
    arguments = {'namespace': NAMESPACE, 'model': 'espnet_c_p2q3_cityscapes',
                 'input_width': '256', 'input_height': '128', 'device': 'cpu',
                 'precision': 'fp32'}
    return LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(launch_file)),
                                 launch_arguments=arguments.items()),
        launch_pytest.actions.ReadyToTest(),
    ])


@pytest.mark.launch(fixture=segment_launch)
def test_frames_in_labels_out_then_nothing_left() -> Iterator[None]:
    """Labels come out in the namespace; after shutdown no process of the launch is alive."""
    probe = Probe('launch_pytest_probe')
    try:
        image_pub = probe.node.create_publisher(Image, f'/{NAMESPACE}/image', 10)
        labels = probe.record(Image, f'/{NAMESPACE}/segmentation/labels')
        rgb = np.full((240, 320, 3), 90, np.uint8)
        timer = probe.node.create_timer(SEND_PERIOD_S, lambda: image_pub.publish(camera_image(
            rgb, 'rgb8', header_at(probe.node.get_clock().now().nanoseconds, 'camera'))))
        probe.spin_until(lambda: labels.messages, START_TIMEOUT_S,
                         f'/{NAMESPACE}/segmentation/labels')
        probe.node.destroy_timer(timer)
        assert labels.messages[0][1].encoding == 'mono8'
    finally:
        probe.close()
    yield
    # Runs after launch_pytest has shut the launch down.
    assert not leftovers(MARKER), leftovers(MARKER)
