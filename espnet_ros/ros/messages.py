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

from typing import Optional

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from espnet_ros.imaging.camera_model import image_intrinsics, SensorView
from espnet_ros.imaging.codec import encode_32fc1, encode_mono8, encode_rgb8, EncodedImage
from espnet_ros.imaging.pipeline import FrameOutputs
from espnet_ros.streaming.diagnostics import Summary
from espnet_ros.zoo.registry import ModelSpec


def image_message(header: Header, encoded: EncodedImage, height: int, width: int) -> Image:
    """Return a sensor_msgs/Image carrying ``header`` and the packed pixels."""
    message = Image(header=header, height=height, width=width, encoding=encoded.encoding,
                    is_bigendian=False, step=encoded.step)
    message.data = encoded.data
    return message


def output_images(header: Header, outputs: FrameOutputs, *,
                  labels: bool = True) -> dict[str, Image]:
    """Return the frame's outputs as Image messages by output name (labels when asked)."""
    height, width = outputs.labels.shape
    encoded = {'labels': encode_mono8(outputs.labels) if labels else None,
               'color': outputs.color is not None and encode_rgb8(outputs.color),
               'overlay': outputs.overlay is not None and encode_rgb8(outputs.overlay),
               'confidence': outputs.confidence is not None and encode_32fc1(
                   outputs.confidence)}
    return {output: image_message(header, packed, height, width)
            for output, packed in encoded.items() if packed}


def camera_info_for_labels(source: CameraInfo, header: Header, camera_size: tuple[int, int],
                           label_size: tuple[int, int]) -> CameraInfo:
    """
    Return the camera's CameraInfo for the labels' grid, stamped with ``header``.

    ``camera_size`` is the camera frame's (height, width); ``label_size`` is the labels'
    (width, height). K and P are those of the part of the sensor the frame shows (its ROI and
    binning, REP 104), rescaled to the labels, which then need no ROI or binning of their
    own. Raises ValueError when the CameraInfo does not describe a frame of that size.
    """
    roi = source.roi
    view = SensorView((source.width, source.height), (roi.x_offset, roi.y_offset),
                      (roi.width, roi.height), (source.binning_x, source.binning_y))
    k, p = image_intrinsics(source.k, source.p, view, image_size=camera_size[::-1],
                            to_size=label_size)
    return CameraInfo(header=header, width=label_size[0], height=label_size[1],
                      distortion_model=source.distortion_model, d=source.d, r=source.r,
                      k=k, p=p)


def diagnostic_status(summary: Summary, name: str) -> DiagnosticStatus:
    """Return the node's DiagnosticStatus for a diagnostics summary."""
    return DiagnosticStatus(name=f'{name}: segmentation', hardware_id=name,
                            level=bytes([int(summary.level)]), message=summary.message,
                            values=[KeyValue(key=key, value=value)
                                    for key, value in summary.values])


def label_info_message(spec: ModelSpec, header: Header) -> Optional[object]:
    """Return vision_msgs/LabelInfo for ``spec`` where vision_msgs is installed, else None."""
    try:
        from vision_msgs.msg import LabelInfo, VisionClass
    except ImportError:
        return None
    return LabelInfo(header=header, threshold=0.0, class_map=[
        VisionClass(class_id=index, class_name=name)
        for index, name in enumerate(spec.dataset.classes)])
