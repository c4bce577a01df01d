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
A launch_testing test of the installed segment.launch.py: frames in, labels out, clean exit.

Run with ``launch_test`` after sourcing the install (test/test_launch_files.py does): the
launch file starts the segmenter in a namespace with a small model; the test plays a camera
there and waits for labels; after shutdown every process must have exited cleanly.
"""

from pathlib import Path
import time
import unittest

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
import launch_testing
import launch_testing.actions
import launch_testing.asserts
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image

NAMESPACE = 'lt'
ARGUMENTS = {'namespace': NAMESPACE, 'model': 'espnet_c_p2q3_cityscapes', 'input_width': '256',
             'input_height': '128', 'device': 'cpu', 'precision': 'fp32'}
LABELS_TIMEOUT_S = 240.0
SEND_PERIOD_S = 0.5
SPIN_STEP_S = 0.05
WIDTH, HEIGHT = 160, 120


def generate_test_description() -> LaunchDescription:
    """Return the installed segment.launch.py, then ready to test."""
    launch_file = Path(get_package_share_directory('espnet_ros')) / 'launch' / 'segment.launch.py'
    return LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(launch_file)),
                                 launch_arguments=ARGUMENTS.items()),
        launch_testing.actions.ReadyToTest(),
    ])


def grey_frame(node: Node) -> Image:
    """Return a grey rgb8 frame stamped now."""
    frame = Image(height=HEIGHT, width=WIDTH, encoding='rgb8', step=WIDTH * 3)
    frame.header.stamp = node.get_clock().now().to_msg()
    frame.header.frame_id = 'camera'
    frame.data = bytes([100]) * (WIDTH * HEIGHT * 3)
    return frame


class TestLabelsInNamespace(unittest.TestCase):
    """Labels come out on the namespaced topic for frames sent to the namespaced image."""

    def test_frames_in_labels_out(self) -> None:
        """Play a camera on /lt/image until /lt/segmentation/labels carries a message."""
        context = Context()
        rclpy.init(context=context)
        try:
            node = rclpy.create_node('launch_testing_probe', context=context)
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(node)
            labels = []
            node.create_subscription(Image, f'/{NAMESPACE}/segmentation/labels',
                                     labels.append, 10)
            camera = node.create_publisher(Image, f'/{NAMESPACE}/image', 10)
            node.create_timer(SEND_PERIOD_S, lambda: camera.publish(grey_frame(node)))
            deadline = time.monotonic() + LABELS_TIMEOUT_S
            while not labels and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=SPIN_STEP_S)
            self.assertTrue(labels, f'no labels on /{NAMESPACE}/segmentation/labels')
            self.assertEqual((labels[0].width, labels[0].height, labels[0].encoding),
                             (WIDTH, HEIGHT, 'mono8'))
        finally:
            rclpy.try_shutdown(context=context)


@launch_testing.post_shutdown_test()
class TestCleanExit(unittest.TestCase):
    """Every process of the launch exited with status 0 when the launch was shut down."""

    def test_exit_codes(self, proc_info: launch_testing.ProcInfoHandler) -> None:
        """Check each process's exit status."""
        launch_testing.asserts.assertExitCodes(proc_info)
