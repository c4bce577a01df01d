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
Every message the package builds, in one place: images, camera info, class tables, diagnostics.

The rest of the package works on numpy arrays and plain data; these functions turn that into
ROS messages, each output stamped with its camera frame's header.
"""

import json
from typing import Optional, TYPE_CHECKING

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header, String

from espnet_ros.imaging.cloud import OrganizedCloud, point_field_layout
from espnet_ros.imaging.codec import EncodedImage

if TYPE_CHECKING:  # these import PyTorch, which the image player does not need
    from espnet_ros.streaming.diagnostics import Summary
    from espnet_ros.streaming.outputs import LabelsCameraInfo
    from espnet_ros.zoo.registry import ModelSpec


def image_message(header: Header, encoded: EncodedImage, height: int, width: int) -> Image:
    """Return a sensor_msgs/Image carrying ``header`` and the packed pixels."""
    message = Image(header=header, height=height, width=width, encoding=encoded.encoding,
                    is_bigendian=False, step=encoded.step)
    message.data = encoded.data
    return message


def camera_info_message(header: Header, info: 'LabelsCameraInfo') -> CameraInfo:
    """Return the labels' sensor_msgs/CameraInfo stamped with ``header``."""
    return CameraInfo(header=header, width=info.width, height=info.height,
                      distortion_model=info.distortion_model, d=info.d, r=info.r, k=info.k,
                      p=info.p)


def diagnostic_status(summary: 'Summary', name: str) -> DiagnosticStatus:
    """Return the node's DiagnosticStatus for a diagnostics summary."""
    return DiagnosticStatus(name=f'{name}: segmentation', hardware_id=name,
                            level=bytes([int(summary.level)]), message=summary.message,
                            values=[KeyValue(key=key, value=value)
                                    for key, value in summary.values])


def classes_message(spec: 'ModelSpec') -> String:
    """Return the std_msgs/String class table (JSON) that the node latches."""
    from espnet_ros.zoo.registry import class_table  # PyTorch: only with a model
    return String(data=json.dumps(class_table(spec)))


def label_info_message(spec: 'ModelSpec', header: Header) -> Optional[object]:
    """Return vision_msgs/LabelInfo for ``spec`` where vision_msgs is installed, else None."""
    try:
        from vision_msgs.msg import LabelInfo, VisionClass
    except ImportError:
        return None
    from espnet_ros.zoo.registry import labelled_classes  # PyTorch: only with a model
    return LabelInfo(header=header, threshold=0.0, class_map=[
        VisionClass(class_id=index, class_name=name)
        for index, name, _ in labelled_classes(spec.dataset)])


def point_fields(dtype: np.dtype) -> list[PointField]:
    """Return the PointFields describing a structured numpy point type, in offset order."""
    return [PointField(name=name, offset=offset, datatype=getattr(PointField, datatype), count=1)
            for name, offset, datatype in point_field_layout(dtype)]


def point_cloud_message(header: Header, cloud: OrganizedCloud) -> PointCloud2:
    """Return a sensor_msgs/PointCloud2 holding ``cloud``'s buffer as is (no repacking)."""
    message = PointCloud2(header=header, height=cloud.height, width=cloud.width,
                          fields=point_fields(cloud.dtype), is_bigendian=False,
                          point_step=cloud.point_step, row_step=cloud.row_step,
                          is_dense=cloud.is_dense)
    message.data = cloud.data
    return message
