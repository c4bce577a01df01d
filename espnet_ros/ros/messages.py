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

from typing import Optional, TYPE_CHECKING

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from espnet_ros.imaging.camera_model import intrinsics_for_labels
from espnet_ros.imaging.cloud import OrganizedCloud
from espnet_ros.imaging.codec import EncodedImage
from espnet_ros.imaging.outputs import encode_outputs

if TYPE_CHECKING:  # these import PyTorch, which the image player does not need
    from espnet_ros.imaging.pipeline import FrameOutputs
    from espnet_ros.streaming.diagnostics import Summary
    from espnet_ros.zoo.registry import ModelSpec


def image_message(header: Header, encoded: EncodedImage, height: int, width: int) -> Image:
    """Return a sensor_msgs/Image carrying ``header`` and the packed pixels."""
    message = Image(header=header, height=height, width=width, encoding=encoded.encoding,
                    is_bigendian=False, step=encoded.step)
    message.data = encoded.data
    return message


def output_images(header: Header, outputs: 'FrameOutputs', *, labels: bool = True,
                  confidence_encoding: str = '32FC1') -> dict[str, Image]:
    """Return the frame's outputs as Image messages by output name (labels when asked)."""
    height, width = outputs.labels.shape
    return {output: image_message(header, packed, height, width)
            for output, packed in encode_outputs(
                outputs, labels=labels, confidence_encoding=confidence_encoding).items()}


def camera_info_for_labels(source: CameraInfo, header: Header, camera_size: tuple[int, int],
                           label_size: tuple[int, int]) -> CameraInfo:
    """
    Return the camera's CameraInfo for the labels' grid, stamped with ``header``.

    ``camera_size`` is the camera frame's (height, width); ``label_size`` is the labels'
    (width, height). K and P are those of the part of the sensor the frame shows (its ROI and
    binning, REP 104), rescaled to the labels, which then need no ROI or binning of their
    own. Raises ValueError when the CameraInfo does not describe a frame of that size.
    """
    k, p = intrinsics_for_labels(source, camera_size, label_size)
    return CameraInfo(header=header, width=label_size[0], height=label_size[1],
                      distortion_model=source.distortion_model, d=source.d, r=source.r,
                      k=k, p=p)


def diagnostic_status(summary: 'Summary', name: str) -> DiagnosticStatus:
    """Return the node's DiagnosticStatus for a diagnostics summary."""
    return DiagnosticStatus(name=f'{name}: segmentation', hardware_id=name,
                            level=bytes([int(summary.level)]), message=summary.message,
                            values=[KeyValue(key=key, value=value)
                                    for key, value in summary.values])


def label_info_message(spec: 'ModelSpec', header: Header) -> Optional[object]:
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
