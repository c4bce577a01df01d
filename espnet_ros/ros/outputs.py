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
The segmenter's per-frame publishers, as the inference worker's output sink.

The worker asks whether anyone takes an output before rendering it, and hands each frame's
outputs over with the camera header; the messages are built in :mod:`espnet_ros.ros.messages`.
"""

from typing import Callable, Optional

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from espnet_ros.imaging.pipeline import FrameOutputs
from espnet_ros.ros.messages import camera_info_for_labels, output_images
from espnet_ros.ros.qos import OUTPUT_QOS

OUTPUT_TOPICS = {'labels': 'segmentation/labels', 'color': 'segmentation/color',
                 'overlay': 'segmentation/overlay', 'confidence': 'segmentation/confidence',
                 'camera_info': 'segmentation/camera_info'}


class PublisherSink:
    """Publishes a worker's outputs on the node's topics (an OutputSink)."""

    def __init__(self, node: Node, *, closed: Callable[[], bool]) -> None:
        """Create the output publishers on ``node``; ``closed`` says ROS has shut down."""
        self._node = node
        self._closed = closed
        self.publishers = {
            output: node.create_publisher(CameraInfo if output == 'camera_info' else Image,
                                          topic, OUTPUT_QOS)
            for output, topic in OUTPUT_TOPICS.items()}
        self.camera_info: Optional[CameraInfo] = None

    def wants(self, output: str) -> bool:
        """Return True if ``output`` has a subscriber now."""
        return self.publishers[output].get_subscription_count() > 0

    def publish(self, header: Header, outputs: FrameOutputs,
                camera_size: tuple[int, int]) -> None:
        """Publish the frame's outputs (labels only when listened to) and its CameraInfo."""
        for output, message in output_images(header, outputs,
                                             labels=self.wants('labels')).items():
            self.publishers[output].publish(message)
        if self.camera_info is not None:
            height, width = outputs.labels.shape
            self.publishers['camera_info'].publish(camera_info_for_labels(
                self.camera_info, header, camera_size, (width, height)))

    def closed(self) -> bool:
        """Return True once ROS has shut down."""
        return self._closed()

    def destroy(self) -> None:
        """Destroy the publishers."""
        for publisher in self.publishers.values():
            self._node.destroy_publisher(publisher)
        self.publishers.clear()
