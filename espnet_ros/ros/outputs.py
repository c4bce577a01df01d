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
The segmenter's publishers: the rclpy backend of the core's output writer.

:class:`~espnet_ros.streaming.outputs.OutputWriter` decides what each frame sends; this
backend builds the messages (:mod:`espnet_ros.ros.messages`) and publishes them, and says
whether an output has a subscriber. The latched class table and LabelInfo have publishers
of their own that live as long as the node, so late joiners hear them across reconfigures.
"""

from typing import Any, Callable, Optional, TYPE_CHECKING

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header, String

from espnet_ros.imaging.cloud import OrganizedCloud
from espnet_ros.imaging.codec import EncodedImage
from espnet_ros.imaging.outputs import (class_cloud_topic, CLASSES_TOPIC, LABEL_INFO_TOPIC,
                                        OUTPUT_TOPICS)
from espnet_ros.ros.messages import (camera_info_message, classes_message, image_message,
                                     label_info_message, point_cloud_message)
from espnet_ros.ros.qos import LATCHED_QOS, OUTPUT_QOS
from espnet_ros.runtime.options import Output

if TYPE_CHECKING:  # PyTorch
    from espnet_ros.streaming.outputs import LabelsCameraInfo
    from espnet_ros.zoo.registry import ModelSpec

__all__ = ['LatchedPublishers', 'OUTPUT_TOPICS', 'PublisherBackend']

_MESSAGE_TYPES = {Output.CAMERA_INFO: CameraInfo, Output.POINTS: PointCloud2}


class LatchedPublishers:
    """The class table and LabelInfo publishers (transient local), made once per node."""

    def __init__(self, node: Node, prefix: str = '') -> None:
        """
        Create the class table's publisher; LabelInfo's comes with its first message.

        ``prefix``: a camera's namespace with its slash (``front/``), empty for one camera.
        """
        self._node = node
        self._prefix = prefix
        self._classes = node.create_publisher(String, prefix + CLASSES_TOPIC, LATCHED_QOS)
        self._label_info: Optional[Any] = None

    def publish(self, spec: 'ModelSpec', header: Optional[Header]) -> None:
        """Latch the class table and (where vision_msgs is installed) LabelInfo of ``spec``."""
        self._classes.publish(classes_message(spec))
        label_info = label_info_message(spec, header or Header())
        if label_info is not None:
            if self._label_info is None:
                self._label_info = self._node.create_publisher(
                    type(label_info), self._prefix + LABEL_INFO_TOPIC, LATCHED_QOS)
            self._label_info.publish(label_info)


class PublisherBackend:
    """Publishes the writer's outputs on the node's topics (a MessageBackend)."""

    def __init__(self, node: Node, latched: LatchedPublishers, *,
                 closed: Callable[[], bool], prefix: str = '') -> None:
        """
        Create the per-frame publishers on ``node``; ``closed`` says ROS has shut down.

        ``prefix``: a camera's namespace with its slash (``front/``), empty for one camera.
        """
        self._node = node
        self._latched = latched
        self._closed = closed
        self._prefix = prefix
        self.publishers = {
            output: node.create_publisher(_MESSAGE_TYPES.get(output, Image), prefix + topic,
                                          OUTPUT_QOS)
            for output, topic in OUTPUT_TOPICS.items()}
        # The dense clouds of points_groups, by name: made when a name is first asked about.
        self.class_publishers: dict[str, Any] = {}

    def wants(self, output: Output) -> bool:
        """Return True if ``output`` has a subscriber now."""
        return self.publishers[output].get_subscription_count() > 0

    def image(self, output: Output, header: Header, encoded: EncodedImage, height: int,
              width: int) -> None:
        """Publish one image output."""
        self.publishers[output].publish(image_message(header, encoded, height, width))

    def camera_info(self, header: Header, info: 'LabelsCameraInfo') -> None:
        """Publish the labels' CameraInfo."""
        self.publishers[Output.CAMERA_INFO].publish(camera_info_message(header, info))

    def cloud(self, stamp: Any, frame_id: str, cloud: OrganizedCloud) -> None:
        """Publish a labelled cloud."""
        self.publishers[Output.POINTS].publish(point_cloud_message(
            Header(stamp=stamp, frame_id=frame_id), cloud))

    def _class_publisher(self, name: str) -> Any:
        publisher = self.class_publishers.get(name)
        if publisher is None:
            publisher = self._node.create_publisher(
                PointCloud2, self._prefix + class_cloud_topic(name), OUTPUT_QOS)
            self.class_publishers[name] = publisher
        return publisher

    def wants_class_cloud(self, name: str) -> bool:
        """Return True if the dense cloud of ``name`` has a subscriber (its publisher is made)."""
        return self._class_publisher(name).get_subscription_count() > 0

    def class_cloud(self, name: str, stamp: Any, frame_id: str, cloud: OrganizedCloud) -> None:
        """Publish the dense cloud of class or group ``name``."""
        self._class_publisher(name).publish(point_cloud_message(
            Header(stamp=stamp, frame_id=frame_id), cloud))

    def latch(self, spec: 'ModelSpec', header: Optional[Header]) -> None:
        """Latch the class table and LabelInfo."""
        self._latched.publish(spec, header)

    def closed(self) -> bool:
        """Return True once ROS has shut down."""
        return self._closed()

    def close(self) -> None:
        """Destroy the per-frame publishers."""
        for publisher in [*self.publishers.values(), *self.class_publishers.values()]:
            self._node.destroy_publisher(publisher)
        self.publishers.clear()
        self.class_publishers.clear()
