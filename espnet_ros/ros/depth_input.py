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
The depth input of the segmenter: ``depth/image`` and ``depth/camera_info``.

Depth images go into a :class:`~espnet_ros.streaming.pairing.StampPairing` (kept by stamp,
not by arrival); a colour frame enters it once its 2D outputs are out. Whichever of the two
arrives second settles the pair, and a timer ends the wait of colour frames whose depth never
came. The colour frame is not held back for depth, which is why message_filters'
synchronisers are not used: ``ApproximateTimeSynchronizer`` emits only pairs, so a colour
frame without a depth partner would lose its 2D outputs, and its ``Cache`` keeps messages in
arrival order, so one stamped out of order hid the partners of the next frames.
"""

import copy
import time
from typing import Any, Callable, Optional

from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image

from espnet_ros.streaming.pairing import Paired, PairingSettings, StampPairing

# How often colour frames waiting for depth are looked at: well under a frame period, so a
# frame whose wait is over goes without its cloud promptly.
EXPIRE_PERIOD_S = 0.02
# Depth images queued per subscription: a depth camera at 200 Hz sends several while the
# executor's threads wait for the GIL beside the network; keep-last-1 lost the partners.
DEPTH_QUEUE = 10


class DepthInput:
    """Subscriptions to the depth image and its CameraInfo, and the pairing by stamp."""

    def __init__(self, node: Node, qos: QoSProfile, callback_group: Any, *,
                 settings: PairingSettings, settled: Callable[[list[Paired]], None],
                 refused: Callable[[str], None], prefix: str = '') -> None:
        """
        Subscribe ``depth/image`` and ``depth/camera_info`` on ``node``.

        ``prefix``: a camera's namespace with its slash (``front/``), empty for one camera.

        ``settled`` gets the colour frames whose pairing is settled (depth None: none came in
        time), from the executor's threads; ``refused`` gets the reason a depth image is not
        kept (an invalid stamp, more pixels than allowed).
        """
        self._node = node
        self.pairing: StampPairing = StampPairing(settings)
        self._settled = settled
        self._refused = refused
        depth_qos = copy.copy(qos)  # the camera's reliability, a deeper queue
        depth_qos.depth = DEPTH_QUEUE
        self._images = node.create_subscription(Image, prefix + 'depth/image', self._add,
                                                depth_qos,
                                                callback_group=callback_group)
        self._info_subscription = node.create_subscription(
            CameraInfo, prefix + 'depth/camera_info', self._on_info, qos,
            callback_group=callback_group)
        self._timer = node.create_timer(EXPIRE_PERIOD_S, self._expire,
                                        callback_group=callback_group)
        self.info: Optional[CameraInfo] = None
        self.info_topic = node.resolve_topic_name(prefix + 'depth/camera_info')

    def _add(self, message: Image) -> None:
        refusal, settled = self.pairing.add_depth(message, time.monotonic_ns())
        if refusal:
            self._refused(refusal)
        if settled:
            self._settled(settled)

    def _on_info(self, message: CameraInfo) -> None:
        self.info = message

    def _expire(self) -> None:
        settled = self.pairing.expire(time.monotonic_ns())
        if settled:
            self._settled(settled)

    def add_colour(self, stamp_ns: int, item: Any) -> list[Paired]:
        """Enter a colour frame whose outputs are out; return the pairs settled now."""
        return self.pairing.add_colour(stamp_ns, item, time.monotonic_ns())

    def apply(self, settings: PairingSettings) -> None:
        """Pair by ``settings`` from now on."""
        self.pairing.apply(settings)

    def destroy(self) -> None:
        """Destroy both subscriptions and the timer; waiting frames go without a cloud."""
        self._node.destroy_timer(self._timer)
        self._node.destroy_subscription(self._images)
        self._node.destroy_subscription(self._info_subscription)
        self.pairing.clear()
