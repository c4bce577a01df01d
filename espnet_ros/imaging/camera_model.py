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
"""

from typing import Any, Sequence

import numpy as np


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
                          label_size: tuple[int, int]) -> tuple[Sequence[float], Sequence[float]]:
    """
    Return (K, P) of a CameraInfo-like ``info`` for the labels' (width, height) grid.

    ``camera_size`` is the camera frame's (height, width), used where the CameraInfo leaves
    its size at 0. Unchanged when the labels are at the camera's resolution.
    """
    from_size = (info.width or camera_size[1], info.height or camera_size[0])
    if from_size == label_size:
        return info.k, info.p
    return scale_intrinsics(info.k, info.p, from_size=from_size, to_size=label_size)
