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
The topics of a segmenter serving several cameras (its ``cameras`` parameter).

For each camera ``c``: subscriptions to ``c/image`` (or ``c/image/compressed``),
``c/camera_info`` and, with ``publish_points``, ``c/depth/image`` and ``c/depth/camera_info``;
publishers of every output under ``c/segmentation/``. Names are relative, so the node's
namespace and remappings apply to each camera as they do to the single camera. The frames
go to a :class:`~espnet_ros.streaming.cameras.MultiCameraWorker`; each camera's outputs to
its own :class:`~espnet_ros.streaming.outputs.OutputWriter`. The latched class table and
LabelInfo of each camera outlive the rig (kept by the node), so late joiners hear them
across reconfigures.
"""

from typing import Any, Callable, Optional, Sequence

from rclpy.lifecycle import LifecycleNode
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from espnet_ros.ros.depth_input import DepthInput
from espnet_ros.ros.outputs import LatchedPublishers, PublisherBackend
from espnet_ros.ros.parameter_table import NodeParameters
from espnet_ros.ros.qos import (camera_qos, changed_reliability, describe_qos,
                                incompatible_qos_callbacks, offered_qos, resolve_reliability)
from espnet_ros.ros.topics import CAMERA_INFO_TOPIC, camera_info_topic, camera_topic, IMAGE_TOPIC
from espnet_ros.streaming.cameras import MultiCameraWorker
from espnet_ros.streaming.clouds import CloudStats
from espnet_ros.streaming.outputs import OutputSettings, OutputWriter


def camera_prefix(name: str) -> str:
    """Return the namespace of camera ``name``'s topics, with its slash (``front/``)."""
    return f'{name}/'


class CameraRig:
    """Each camera's output writer and subscriptions, for one configured model."""

    def __init__(self, node: LifecycleNode, names: Sequence[str], *,
                 latched: dict[str, LatchedPublishers], closed: Callable[[], bool]) -> None:
        """
        Create each camera's publishers on ``node``; ``latched`` keeps the latched ones.

        ``closed`` says ROS has shut down.
        """
        self._node = node
        self.names = list(names)
        self.writers: dict[str, OutputWriter] = {}
        for name in self.names:
            prefix = camera_prefix(name)
            if name not in latched:
                latched[name] = LatchedPublishers(node, prefix)
            self.writers[name] = OutputWriter(
                PublisherBackend(node, latched[name], closed=closed, prefix=prefix),
                warn=node.get_logger().warning,
                depth_info_topic=node.resolve_topic_name(prefix + 'depth/camera_info'))
        self._reliability: dict[str, str] = {}
        self._subscriptions: dict[str, list[Any]] = {}

    # Settings and latched outputs ------------------------------------------------------

    def apply(self, settings: OutputSettings) -> None:
        """Give every camera's writer ``settings`` from the next frame on."""
        for writer in self.writers.values():
            writer.apply(settings)

    def announce(self, spec: Any, header: Any) -> None:
        """Latch the class table and LabelInfo of the serving model under every camera."""
        for writer in self.writers.values():
            writer.announce(spec, header)

    def cloud_stats(self) -> dict[str, Optional[CloudStats]]:
        """Return each camera's cloud counts (None where its depth input is off)."""
        return {name: writer.cloud_stats() for name, writer in self.writers.items()}

    def close(self) -> None:
        """Release every camera's per-frame publishers."""
        for writer in self.writers.values():
            writer.close()

    # Subscriptions ---------------------------------------------------------------------

    def _topics(self, name: str, parameters: NodeParameters) -> tuple[str, Any, str]:
        """Return camera ``name``'s image topic, its message type and its CameraInfo topic."""
        compressed = parameters.input_transport == 'compressed'
        image = camera_prefix(name) + IMAGE_TOPIC
        return (camera_topic(self._node, compressed, image),
                CompressedImage if compressed else Image,
                camera_info_topic(self._node, image, camera_prefix(name) + CAMERA_INFO_TOPIC))

    def subscribe(self, worker: MultiCameraWorker, parameters: NodeParameters,
                  group: Any) -> list[Any]:
        """Subscribe every camera's topics, its frames to ``worker``; return the subscriptions."""
        for name in self.names:
            self._subscribe_camera(name, worker, parameters, group)
        return [item for items in self._subscriptions.values() for item in items]

    def _subscribe_camera(self, name: str, worker: MultiCameraWorker,
                          parameters: NodeParameters, group: Any) -> None:
        node = self._node
        topic, message_type, info_topic = self._topics(name, parameters)
        self._reliability[name] = resolve_reliability(parameters.reliability,
                                                      offered_qos(node, topic))
        qos = camera_qos(self._reliability[name])
        events = incompatible_qos_callbacks(node, topic, qos, parameters.reliability)
        writer = self.writers[name]
        self._subscriptions[name] = [
            node.create_subscription(message_type, topic, worker.offer_to(name), qos,
                                     event_callbacks=events, callback_group=group),
            node.create_subscription(CameraInfo, info_topic, writer.use_camera_info, qos,
                                     callback_group=group),
        ]
        if parameters.publish_points:
            writer.use_depth(DepthInput(node, qos, group, settings=writer.pairing_settings(),
                                        settled=writer.write_settled,
                                        refused=writer.refuse_depth,
                                        prefix=camera_prefix(name)))
        node.get_logger().info(
            f'camera {name}: listening on {node.resolve_topic_name(topic)} '
            f'({message_type.__name__}, {describe_qos(qos)}; reliability '
            f'{parameters.reliability}) and {info_topic}')

    def _unsubscribe_camera(self, name: str) -> None:
        for subscription in self._subscriptions.pop(name, []):
            self._node.destroy_subscription(subscription)
        depth = self.writers[name].use_depth(None)
        if depth is not None:
            depth.destroy()

    def unsubscribe(self) -> None:
        """Destroy every camera's subscriptions and depth input."""
        for name in self.names:
            self._unsubscribe_camera(name)

    def recheck(self, worker: MultiCameraWorker, parameters: NodeParameters,
                group: Any) -> list[Any]:
        """
        With reliability auto, resubscribe the cameras whose publishers call for it.

        Return the subscriptions now held.
        """
        for name in self.names:
            if name not in self._subscriptions:
                continue
            topic, _, _ = self._topics(name, parameters)
            chosen = changed_reliability(parameters.reliability, self._reliability.get(name),
                                         offered_qos(self._node, topic))
            if chosen is not None:
                self._node.get_logger().info(
                    f'the publishers of {self._node.resolve_topic_name(topic)} changed: '
                    f'subscribing {chosen} (reliability auto)')
                self._unsubscribe_camera(name)
                self._subscribe_camera(name, worker, parameters, group)
        return [item for items in self._subscriptions.values() for item in items]
