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


"""Message construction shared by the nodes: images, QoS profiles, the class table."""

from typing import Optional, TYPE_CHECKING

from rclpy.qos import (DurabilityPolicy, HistoryPolicy, qos_profile_sensor_data, QoSProfile,
                       ReliabilityPolicy)
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from espnet_ros.imaging.codec import EncodedImage

if TYPE_CHECKING:  # the registry imports PyTorch, which the image player does not need
    from espnet_ros.zoo.registry import ModelSpec

# The segmenter's diagnostics key for the median decode-to-publish time of its frames.
PROCESSING_MEDIAN_KEY = 'processing median (ms)'
# Its counts of camera frames taken, and of frames replaced unprocessed by a newer one.
RECEIVED_KEY = 'frames received'
PROCESSED_KEY = 'frames processed'
DROPPED_KEY = 'frames dropped (newer frame arrived)'
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
    """Return 'reliability/durability' in words, for warnings."""
    return f'{qos.reliability.name.lower()}, {qos.durability.name.lower()}'


def stamp_ns(header: Header) -> int:
    """Return a header stamp in nanoseconds."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def image_message(header: Header, encoded: EncodedImage, height: int, width: int) -> Image:
    """Return a sensor_msgs/Image carrying ``header`` and the packed pixels."""
    message = Image(header=header, height=height, width=width, encoding=encoded.encoding,
                    is_bigendian=False, step=encoded.step)
    message.data = encoded.data
    return message


def label_info_message(spec: 'ModelSpec', header: Header) -> Optional[object]:
    """Return vision_msgs/LabelInfo for ``spec`` where vision_msgs is installed, else None."""
    try:
        from vision_msgs.msg import LabelInfo, VisionClass
    except ImportError:
        return None
    return LabelInfo(header=header, threshold=0.0, class_map=[
        VisionClass(class_id=index, class_name=name)
        for index, name in enumerate(spec.dataset.classes)])
