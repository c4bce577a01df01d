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
The package's QoS profiles, said once, and a clear warning when the camera's cannot match.

A best-effort camera and a reliable subscription never connect, and nothing else says so:
it is the most common reason a segmentation node shows no output.
"""

from typing import Any

from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, qos_profile_sensor_data, QoSProfile,
                       ReliabilityPolicy)

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
    if reliability == 'best_effort':
        return qos_profile_sensor_data
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      history=HistoryPolicy.KEEP_LAST)


def describe_qos(qos: QoSProfile) -> str:
    """Return 'reliability, durability' in words, for warnings."""
    return f'{qos.reliability.name.lower()}, {qos.durability.name.lower()}'


def incompatible_qos_callbacks(node: Node, topic: str,
                               qos: QoSProfile) -> SubscriptionEventCallbacks:
    """Return event callbacks that warn, naming the topic and both QoS settings."""
    def on_incompatible(event: Any) -> None:
        resolved = node.resolve_topic_name(topic)
        offered = sorted({describe_qos(info.qos_profile)
                          for info in node.get_publishers_info_by_topic(resolved)})
        policy = getattr(event.last_policy_kind, 'name', event.last_policy_kind)
        node.get_logger().warning(
            f'incompatible QoS on {resolved}: this subscription requests {describe_qos(qos)} '
            f'but the publisher offers {" / ".join(offered) or "unknown"} (policy {policy}); '
            'no frames will arrive. Set the parameter reliability to match the camera.')
    return SubscriptionEventCallbacks(incompatible_qos=on_incompatible)
