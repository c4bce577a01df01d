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
With a depth input, each frame's labelled cloud goes out too, stamped like its labels, in the
depth image's frame, once its depth partner is settled (:mod:`espnet_ros.streaming.pairing`):
at once when the depth came first, else when it comes, within ``depth_sync_wait``.
"""

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from espnet_ros.imaging.outputs import OUTPUT_TOPICS
from espnet_ros.imaging.pipeline import FrameOutputs
from espnet_ros.ros.depth_input import DepthInput
from espnet_ros.ros.messages import camera_info_for_labels, output_images, point_cloud_message
from espnet_ros.ros.qos import OUTPUT_QOS
from espnet_ros.streaming.clouds import CloudMaker, CloudSettings, CloudStats, label_colours
from espnet_ros.streaming.pairing import message_stamp_ns, Paired, PairingSettings

_MESSAGE_TYPES = {'camera_info': CameraInfo, 'points': PointCloud2}


@dataclass(frozen=True)
class CloudJob:
    """What a colour frame's cloud is made from once its depth partner is settled."""

    header: Header
    outputs: FrameOutputs
    camera_size: tuple[int, int]
    label_rgb: np.ndarray
    settings: CloudSettings
    pairing: PairingSettings


class PublisherSink:
    """Publishes a worker's outputs on the node's topics (an OutputSink)."""

    def __init__(self, node: Node, *, closed: Callable[[], bool],
                 warn: Callable[[str], None]) -> None:
        """
        Create the output publishers on ``node``.

        ``closed`` says ROS has shut down; ``warn`` gets throttled reasons for missing clouds.
        """
        self._node = node
        self._closed = closed
        self.publishers = {
            output: node.create_publisher(_MESSAGE_TYPES.get(output, Image), topic, OUTPUT_QOS)
            for output, topic in OUTPUT_TOPICS.items()}
        self.camera_info: Optional[CameraInfo] = None
        self.depth: Optional[DepthInput] = None  # set while publish_points subscribes depth
        self.clouds = CloudMaker(warn, info_topic=node.resolve_topic_name('depth/camera_info'))
        self.label_rgb = label_colours([])
        self.confidence_encoding = '32FC1'
        self.cloud_settings = CloudSettings()
        self.pairing = PairingSettings()

    def apply(self, values: dict[str, Any]) -> None:
        """Take the run-time parameters of the outputs (confidence encoding, clouds)."""
        self.confidence_encoding = values['confidence_encoding']
        self.pairing = PairingSettings(slop_s=values['depth_sync_slop'],
                                       wait_s=values['depth_sync_wait'],
                                       max_pixels=values['max_input_pixels'])
        self.cloud_settings = CloudSettings(min_depth=values['min_depth'],
                                            max_depth=values['max_depth'],
                                            stride=values['points_stride'])
        depth = self.depth
        if depth is not None:
            depth.pairing.apply(self.pairing)

    def subscribe_depth(self, qos: Any, callback_group: Any) -> None:
        """Subscribe the depth input (publish_points): clouds follow their colour frames."""
        self.depth = DepthInput(self._node, qos, callback_group, settings=self.pairing,
                                settled=self._make_clouds, refused=self.clouds.refuse)

    def unsubscribe_depth(self) -> None:
        """Destroy the depth input; colour frames still waiting for depth get no cloud."""
        depth, self.depth = self.depth, None
        if depth is not None:
            depth.destroy()

    def set_palette(self, palette: Any) -> None:
        """Colour the cloud's points with these class colours (the serving model's)."""
        self.label_rgb = label_colours(palette)

    def _listened(self, output: str) -> bool:
        return self.publishers[output].get_subscription_count() > 0

    def wants(self, output: str) -> bool:
        """Return True if ``output`` has a subscriber now (confidence: or the cloud does)."""
        if output == 'confidence' and self.depth is not None and self._listened('points'):
            return True
        return self._listened(output)

    def publish(self, header: Header, outputs: FrameOutputs,
                camera_size: tuple[int, int]) -> None:
        """Publish the frame's outputs (labels only when listened to), CameraInfo and cloud."""
        images = output_images(header, outputs, labels=self._listened('labels'),
                               confidence_encoding=self.confidence_encoding)
        if not self._listened('confidence'):
            images.pop('confidence', None)  # computed for the cloud alone
        for output, message in images.items():
            self.publishers[output].publish(message)
        if self.camera_info is not None:
            height, width = outputs.labels.shape
            self.publishers['camera_info'].publish(camera_info_for_labels(
                self.camera_info, header, camera_size, (width, height)))
        depth = self.depth
        if depth is not None and self._listened('points'):
            try:
                stamp = message_stamp_ns(header)
            except ValueError as error:
                self.clouds.refuse(f'colour frame: {error}: no cloud')
                return
            depth.add_colour(stamp, CloudJob(header, outputs, camera_size, self.label_rgb,
                                             self.cloud_settings, self.pairing))

    def _make_clouds(self, settled: list[Paired]) -> None:
        """Make and publish the clouds of colour frames whose depth partner is settled."""
        depth = self.depth
        publisher = self.publishers.get('points')
        for pair in settled:
            job: CloudJob = pair.colour
            cloud = self.clouds.make(
                job.header, job.outputs, job.camera_size, pair.depth,
                depth.info if depth is not None else None, slop_s=job.pairing.slop_s,
                wait_s=job.pairing.wait_s, label_rgb=job.label_rgb, settings=job.settings)
            if cloud is not None and publisher is not None and not self._closed():
                publisher.publish(point_cloud_message(
                    Header(stamp=job.header.stamp, frame_id=pair.depth.header.frame_id), cloud))

    def cloud_stats(self) -> Optional[CloudStats]:
        """Return the cloud counts while the depth input is on, else None."""
        return self.clouds.snapshot() if self.depth is not None else None

    def closed(self) -> bool:
        """Return True once ROS has shut down."""
        return self._closed()

    def destroy(self) -> None:
        """Destroy the publishers."""
        for publisher in self.publishers.values():
            self._node.destroy_publisher(publisher)
        self.publishers.clear()
