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
Depth images of known geometry for a camera, to exercise and picture the labelled cloud.

:func:`flat_world` is what a forward-looking camera at a known height sees of flat ground
with a facade at a fixed distance: the ground plane below the horizon, the facade above it.
Depth is the optical-frame z (REP 118), not the range along the ray.
"""

from typing import Sequence

import numpy as np


# A VGA-class depth camera's focal length per 640 pixels of width.
FOCAL_PER_640_PX = 525.0
# Share of depth pixels without a measurement, as real sensors have.
DROPOUT = 0.05


def floor_and_wall(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """
    Return H x W float32 metres the benchmarks' clouds are built from, and its camera matrix.

    A floor rising to a wall (1.5 m at the top row, 3 mm more a row, a millimetre step per
    column) with DROPOUT of the pixels unmeasured (0), seeded; the focal length scales with
    the width.
    """
    width, height = size
    rng = np.random.default_rng(0)
    v, u = np.mgrid[0:height, 0:width]
    metres = (1.5 + 0.003 * v + 0.001 * (u % 97)).astype(np.float32)
    metres[rng.random((height, width)) < DROPOUT] = 0.0
    focal = FOCAL_PER_640_PX * width / 640
    k = np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2],
                  [0.0, 0.0, 1.0]])
    return metres, k


def pinhole_k(size: tuple[int, int], horizontal_fov_deg: float) -> np.ndarray:
    """Return a 3x3 camera matrix with square pixels and the principal point in the middle."""
    width, height = size
    focal = (width / 2) / np.tan(np.radians(horizontal_fov_deg) / 2)
    return np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2],
                     [0.0, 0.0, 1.0]])


def flat_world(size: tuple[int, int], k: np.ndarray, camera_height_m: float,
               facade_m: float) -> np.ndarray:
    """
    Return H x W float32 metres: ground ``camera_height_m`` below the optical axis, a facade.

    The optical axis is level: the row through ``cy`` is the horizon. Ground farther than
    the facade is hidden behind it.
    """
    width, height = size
    ray_y = (np.arange(height, dtype=np.float64) - k[1, 2]) / k[1, 1]
    with np.errstate(divide='ignore'):
        ground = np.where(ray_y > 0, camera_height_m / ray_y, np.inf)
    rows = np.minimum(ground, facade_m).astype(np.float32)
    return np.repeat(rows[:, None], width, axis=1)


def ground_tile(points_xz: Sequence[np.ndarray], tile_m: float) -> np.ndarray:
    """Return (forward, left) tile indices of optical-frame points on a grid of ``tile_m``."""
    x, z = points_xz
    return np.stack([np.floor(z / tile_m), np.floor(-x / tile_m)], axis=-1).astype(np.int64)
