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
The depth input of the segmenter: ``depth/image`` and ``depth/camera_info``, by stamp.

Depth images go into a message_filters ``Cache`` (a time-indexed ring of the last
:data:`DEPTH_CACHE_SIZE`); when a colour frame's outputs are ready, its partner is the cached
depth image of the same stamp or the nearest one within ``depth_sync_slop``. The colour
frame is not held back for depth, which is why message_filters' synchronisers are not used:
``ApproximateTimeSynchronizer`` emits only pairs, so a colour frame without a depth partner
would lose its 2D outputs, and its Python version pairs stamps strictly closer than the slop,
so a slop of 0 would pair nothing, not equal stamps.
"""

import threading
from typing import Any, Optional

from message_filters import Cache, SimpleFilter, Subscriber
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image

# Depth images kept for pairing: a second at 30 Hz, more than a CPU frame's time in the
# network; the partner of a colour frame is looked up when its outputs are ready.
DEPTH_CACHE_SIZE = 30
NS_PER_S = 1e9


class DepthInput:
    """Subscriptions to the depth image and its CameraInfo, and the pairing by stamp."""

    def __init__(self, node: Node, qos: QoSProfile, callback_group: Any) -> None:
        """Subscribe ``depth/image`` and ``depth/camera_info`` on ``node``."""
        self._node = node
        self._lock = threading.Lock()
        # The cache is filled under our lock from the subscription (the executor's thread)
        # and read from the inference thread, so it takes no input of its own.
        self._cache = Cache(SimpleFilter(), DEPTH_CACHE_SIZE)
        self._images = Subscriber(node, Image, 'depth/image', qos_profile=qos,
                                  callback_group=callback_group)
        self._images.registerCallback(self._add)
        self._info_subscription = node.create_subscription(
            CameraInfo, 'depth/camera_info', self._on_info, qos, callback_group=callback_group)
        self.info: Optional[CameraInfo] = None
        self.info_topic = node.resolve_topic_name('depth/camera_info')

    def _add(self, message: Image) -> None:
        with self._lock:
            self._cache.add(message)

    def _on_info(self, message: CameraInfo) -> None:
        self.info = message

    def partner(self, stamp: Any, slop_s: float) -> Optional[Image]:
        """Return the cached depth image nearest ``stamp`` if within ``slop_s``, else None."""
        target = Time.from_msg(stamp)
        with self._lock:
            candidates = [self._cache.getElemBeforeTime(target),
                          self._cache.getElemAfterTime(target)]
        best, best_gap = None, None
        for candidate in candidates:
            if candidate is None:
                continue
            gap = abs((Time.from_msg(candidate.header.stamp) - target).nanoseconds) / NS_PER_S
            if best_gap is None or gap < best_gap:
                best, best_gap = candidate, gap
        return best if best_gap is not None and best_gap <= slop_s else None

    def destroy(self) -> None:
        """Destroy both subscriptions."""
        self._node.destroy_subscription(self._images.sub)
        self._node.destroy_subscription(self._info_subscription)
