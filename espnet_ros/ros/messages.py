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

from typing import Optional

import numpy as np
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, qos_profile_sensor_data, QoSProfile,
                       ReliabilityPolicy)
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header

from espnet_ros.imaging.cloud import OrganizedCloud
from espnet_ros.imaging.codec import EncodedImage
from espnet_ros.zoo.registry import ModelSpec

# Reliable outputs match both best-effort and reliable subscribers (rviz2, planners).
# The segmenter's diagnostics key for the median decode-to-publish time of its frames.
PROCESSING_MEDIAN_KEY = 'processing median (ms)'
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


def label_info_message(spec: ModelSpec, header: Header) -> Optional[object]:
    """Return vision_msgs/LabelInfo for ``spec`` where vision_msgs is installed, else None."""
    try:
        from vision_msgs.msg import LabelInfo, VisionClass
    except ImportError:
        return None
    return LabelInfo(header=header, threshold=0.0, class_map=[
        VisionClass(class_id=index, class_name=name)
        for index, name in enumerate(spec.dataset.classes)])


# numpy sample type: PointField datatype, for the types our clouds use.
_POINT_FIELD_TYPES = {'<f4': PointField.FLOAT32, '<u4': PointField.UINT32,
                      '|u1': PointField.UINT8, '<f8': PointField.FLOAT64}


def point_fields(dtype: np.dtype) -> list[PointField]:
    """Return the PointFields describing a structured numpy point type, in offset order."""
    fields = []
    for name in dtype.names:
        sample, offset = dtype.fields[name][:2]
        fields.append(PointField(name=name, offset=offset,
                                 datatype=_POINT_FIELD_TYPES[sample.str], count=1))
    return fields


def point_cloud_message(header: Header, cloud: OrganizedCloud) -> PointCloud2:
    """Return a sensor_msgs/PointCloud2 holding ``cloud``'s buffer as is (no repacking)."""
    message = PointCloud2(header=header, height=cloud.height, width=cloud.width,
                          fields=point_fields(cloud.dtype), is_bigendian=False,
                          point_step=cloud.point_step, row_step=cloud.row_step,
                          is_dense=cloud.is_dense)
    message.data = cloud.data
    return message
