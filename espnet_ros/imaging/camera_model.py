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
Pinhole intrinsics under a change of image size; no ROS import.

When labels are published at the network resolution, a planner projecting them needs the
camera matrix of that resolution: scaling an image by (sx, sy) scales the first row of K and
P by sx and the second by sy, as image_proc's resize node does, so that our rescaled
CameraInfo agrees with the rest of a ROS image pipeline.

A CameraInfo's K and P describe the full sensor; its ``roi`` and ``binning`` say which part
of the sensor the image shows and how many sensor pixels make one image pixel (REP 104).
The labels cover exactly the image, so their K and P are those of the ROI (principal point
moved by the ROI offset, as image_geometry's PinholeCameraModel does), scaled from the ROI
to the label size; the published CameraInfo then has no ROI and no binning of its own.
"""

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class SensorView:
    """What part of the sensor an image shows: CameraInfo's size, ``roi`` and ``binning``."""

    sensor_size: tuple[int, int]         # (width, height) of the calibrated sensor; 0 unknown
    roi_offset: tuple[int, int] = (0, 0)  # (x, y) in sensor pixels
    roi_size: tuple[int, int] = (0, 0)    # (width, height) in sensor pixels; 0 = full sensor
    binning: tuple[int, int] = (1, 1)     # sensor pixels per image pixel; 0 means 1

    def region(self, image_size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        """
        Return the (offset, size) on the sensor of an image of ``image_size`` (width, height).

        Raises ValueError when the CameraInfo does not describe an image of that size.
        """
        binning = tuple(max(1, factor) for factor in self.binning)
        if all(self.roi_size):
            offset, size = self.roi_offset, self.roi_size
        elif all(self.sensor_size):
            offset, size = (0, 0), self.sensor_size
        else:  # an uncalibrated camera: the image is the whole sensor
            return (0, 0), (image_size[0] * binning[0], image_size[1] * binning[1])
        expected = (size[0] // binning[0], size[1] // binning[1])
        if expected != tuple(image_size):
            raise ValueError(
                f'camera_info describes a {expected[0]}x{expected[1]} image (sensor '
                f'{self.sensor_size[0]}x{self.sensor_size[1]}, roi {size[0]}x{size[1]} at '
                f'{offset[0]},{offset[1]}, binning {binning[0]}x{binning[1]}) but the image is '
                f'{image_size[0]}x{image_size[1]}: not publishing intrinsics that do not fit')
        return offset, size


def image_intrinsics(k: Sequence[float], p: Sequence[float], view: SensorView, *,
                     image_size: tuple[int, int], to_size: tuple[int, int]
                     ) -> tuple[list[float], list[float]]:
    """Return (K, P) of the part of the sensor an image shows, rescaled to ``to_size``."""
    (x_offset, y_offset), region_size = view.region(image_size)
    k_matrix = np.asarray(k, dtype=np.float64).reshape(3, 3).copy()
    p_matrix = np.asarray(p, dtype=np.float64).reshape(3, 4).copy()
    # Moving the origin to the ROI corner: row 0 -= x * row 2 (cx -= x for K and a mono P).
    for matrix in (k_matrix, p_matrix):
        matrix[0] -= x_offset * matrix[2]
        matrix[1] -= y_offset * matrix[2]
    return scale_intrinsics(k_matrix.reshape(-1), p_matrix.reshape(-1), from_size=region_size,
                            to_size=to_size)


def scale_intrinsics(k: Sequence[float], p: Sequence[float], *, from_size: tuple[int, int],
                     to_size: tuple[int, int]) -> tuple[list[float], list[float]]:
    """Return (K, P) rescaled from (width, height) ``from_size`` to ``to_size``."""
    sx = to_size[0] / from_size[0]
    sy = to_size[1] / from_size[1]
    k_matrix = np.asarray(k, dtype=np.float64).reshape(3, 3).copy()
    p_matrix = np.asarray(p, dtype=np.float64).reshape(3, 4).copy()
    # Rows, not single entries: P's fourth column (fx * baseline of a stereo pair) scales too.
    for matrix in (k_matrix, p_matrix):
        matrix[0] *= sx
        matrix[1] *= sy
    return k_matrix.reshape(-1).tolist(), p_matrix.reshape(-1).tolist()


def intrinsics_for_labels(info: Any, camera_size: tuple[int, int],
                          label_size: tuple[int, int]) -> tuple[list[float], list[float]]:
    """
    Return (K, P) of a CameraInfo-like ``info`` for the labels' (width, height) grid.

    ``camera_size`` is the camera frame's (height, width). The CameraInfo's ROI and binning
    (REP 104) say which part of the sensor the frame shows; ValueError when they do not fit
    the frame. Works on rclpy's and rosbags' CameraInfo alike, by their fields.
    """
    roi = info.roi
    view = SensorView((info.width, info.height), (roi.x_offset, roi.y_offset),
                      (roi.width, roi.height), (info.binning_x, info.binning_y))
    return image_intrinsics(info.k, info.p, view, image_size=camera_size[::-1],
                            to_size=label_size)
