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
The package's QoS profiles, said once; the camera subscription's, matched to the camera.

A best-effort camera and a reliable subscription never connect, and nothing else says so:
it is the most common reason a segmentation node shows no output. ``reliability: auto``
looks at the publishers' offered QoS and picks what matches all of them; an explicit
choice that cannot match gets a clear warning.
"""

from typing import Any, Iterable, Optional

from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, qos_profile_sensor_data, QoSProfile,
                       ReliabilityPolicy)

from espnet_ros.ros.parameter_table import Reliability

try:  # Iron and newer
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

# Reliable outputs match both best-effort and reliable subscribers (rviz2, planners).
OUTPUT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                        history=HistoryPolicy.KEEP_LAST)
# Transient local keeps the last class table for subscribers that start later.
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         history=HistoryPolicy.KEEP_LAST)


def camera_qos(reliability: str) -> QoSProfile:
    """Return the camera subscription QoS: sensor data (best effort, keep last 1) or reliable."""
    if reliability == Reliability.BEST_EFFORT:
        return qos_profile_sensor_data
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      history=HistoryPolicy.KEEP_LAST)


def describe_qos(qos: QoSProfile) -> str:
    """Return 'reliability, durability' in words, for warnings."""
    return f'{qos.reliability.name.lower()}, {qos.durability.name.lower()}'


def incompatible_qos_callbacks(node: Node, topic: str, qos: QoSProfile,
                               setting: str = '') -> SubscriptionEventCallbacks:
    """
    Return event callbacks that warn, naming the topic and both QoS settings.

    Under ``reliability: auto`` (``setting``) the mismatch is only until the next look at
    the publishers, so it is said at info level, without the advice.
    """
    def on_incompatible(event: Any) -> None:
        resolved = node.resolve_topic_name(topic)
        offered = sorted({describe_qos(info.qos_profile)
                          for info in node.get_publishers_info_by_topic(resolved)})
        policy = getattr(event.last_policy_kind, 'name', event.last_policy_kind)
        mismatch = (f'incompatible QoS on {resolved}: this subscription requests '
                    f'{describe_qos(qos)} but the publisher offers '
                    f'{" / ".join(offered) or "unknown"} (policy {policy})')
        if setting == Reliability.AUTO:
            node.get_logger().info(f'{mismatch}; reliability auto resubscribes to match')
            return
        node.get_logger().warning(
            f'{mismatch}; no frames will arrive. Set the parameter reliability to auto or to '
            'match the camera.')
    return SubscriptionEventCallbacks(incompatible_qos=on_incompatible)


def matching_reliability(offered: Iterable[QoSProfile]) -> str:
    """
    Return the reliability that matches every publisher's offer, as a parameter word.

    Reliable only where every publisher is reliable (a reliable subscription never hears a
    best-effort publisher); best effort where any is, or where nobody publishes yet, since a
    best-effort subscription matches both kinds.
    """
    offers = [profile.reliability for profile in offered]
    if offers and all(offer == ReliabilityPolicy.RELIABLE for offer in offers):
        return Reliability.RELIABLE.value
    return Reliability.BEST_EFFORT.value


def resolve_reliability(setting: str, offered: Iterable[QoSProfile]) -> str:
    """Return the reliability to subscribe with: the explicit setting, or auto's match."""
    return matching_reliability(offered) if setting == Reliability.AUTO else setting


def camera_subscription_qos(setting: str, offered: Iterable[QoSProfile]) -> QoSProfile:
    """Return the camera subscription's QoS for a ``reliability`` setting and the offers seen."""
    return camera_qos(resolve_reliability(setting, offered))


def offered_qos(node: Node, topic: str) -> list[QoSProfile]:
    """Return the QoS profiles the publishers of ``topic`` (resolved in the node) offer."""
    resolved = node.resolve_topic_name(topic)
    return [info.qos_profile for info in node.get_publishers_info_by_topic(resolved)]


def changed_reliability(setting: str, current: Optional[str],
                        offered: Iterable[QoSProfile]) -> Optional[str]:
    """Return the reliability auto now chooses when it differs from ``current``, else None."""
    if setting != Reliability.AUTO:
        return None
    chosen = matching_reliability(offered)
    return None if chosen == current else chosen
