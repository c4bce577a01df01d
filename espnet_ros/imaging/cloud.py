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
The labelled, organized point cloud of a frame, built into its message buffer; no ROS import.

Points lie on the grid of the published labels (every ``stride``-th row and column), in
row-major pixel order, so that a consumer can walk the cloud alongside
``labels.data[v * width + u]`` as Nav2's semantic segmentation layer does. Each point takes
the depth of the depth pixel nearest to its label pixel (nearest neighbour, never
interpolated: averaging depths across an object's edge makes points float between the
object and the background) and is back-projected at that depth pixel's own coordinates
with the depth camera matrix, so its geometry is exactly the depth sensor's:

    x = (u_d - cx) * z / fx,    y = (v_d - cy) * z / fy,    z = depth(u_d, v_d)

Points without a valid depth (0, NaN, +-inf, negative, outside [min_depth, max_depth]) keep
their place with NaN x, y, z. Fields, little-endian, packed without padding:

=============  =======  ======================================================================
field          type     content
=============  =======  ======================================================================
x, y, z        float32  metres, in the depth image's optical frame
rgb            float32  the class colour as 0x00RRGGBB, the PCL convention rviz2 reads
label          uint32   class id (uint32 as PCL's PointXYZRGBL)
confidence     float32  probability of the winning class, when confidence is on
=============  =======  ======================================================================

The structured array is a view of the ``array.array`` the message will hold, so the fields
are written once, in place, by vectorised numpy: there is no per-point Python and no copy
from an intermediate array.
"""

import array
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from espnet_ros.imaging.depth import DepthError

__all__ = ['OrganizedCloud', 'build_cloud', 'cloud_dtype', 'nearest_indices', 'pack_rgb',
           'point_field_layout', 'select_label']

_FLOAT = '<f4'
_XYZ_RGB_LABEL = [('x', _FLOAT), ('y', _FLOAT), ('z', _FLOAT), ('rgb', _FLOAT),
                  ('label', '<u4')]
_CONFIDENCE = [('confidence', _FLOAT)]
_RED_SHIFT, _GREEN_SHIFT = 16, 8
# numpy sample type: the sensor_msgs/PointField datatype constant's name, for our clouds.
_POINT_FIELD_TYPES = {'<f4': 'FLOAT32', '<u4': 'UINT32', '|u1': 'UINT8', '<f8': 'FLOAT64'}
# Points written per band: a band fits a core's L2 cache.
_BAND_BYTES = 1 << 19


def cloud_dtype(with_confidence: bool) -> np.dtype:
    """Return the point layout: x, y, z, rgb, label and, if asked, confidence."""
    return np.dtype(_XYZ_RGB_LABEL + (_CONFIDENCE if with_confidence else []))


def point_field_layout(dtype: np.dtype) -> list[tuple[str, int, str]]:
    """Return (name, byte offset, PointField datatype constant name) of each field, in order."""
    layout = []
    for name in dtype.names:
        sample, offset = dtype.fields[name][:2]
        layout.append((name, offset, _POINT_FIELD_TYPES[sample.str]))
    return sorted(layout, key=lambda entry: entry[1])


def pack_rgb(palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Return each RGB colour of ``palette`` as the PCL float32 ``rgb`` value, one per class."""
    colours = np.asarray(palette, dtype=np.uint32).reshape(-1, 3)
    packed = (colours[:, 0] << _RED_SHIFT) | (colours[:, 1] << _GREEN_SHIFT) | colours[:, 2]
    return packed.astype('<u4').view(_FLOAT)


def nearest_indices(count: int, source_count: int, stride: int = 1) -> np.ndarray:
    """
    Return, for every ``stride``-th of ``count`` pixels, the nearest of ``source_count`` pixels.

    Pixel centres are matched (pixel i spans [i, i + 1) on its grid), the rule of OpenCV's
    INTER_NEAREST_EXACT, so equal sizes map each pixel to itself.
    """
    kept = np.arange(0, count, stride)
    if count == source_count:
        return kept
    return np.minimum(((kept + 0.5) * (source_count / count)).astype(np.intp), source_count - 1)


@dataclass(frozen=True)
class OrganizedCloud:
    """A PointCloud2's payload: ``height`` x ``width`` points of ``dtype`` in ``data``."""

    height: int
    width: int
    dtype: np.dtype
    data: array.array
    valid: int  # points with a finite x, y, z

    @property
    def point_step(self) -> int:
        """Return the bytes per point."""
        return self.dtype.itemsize

    @property
    def row_step(self) -> int:
        """Return the bytes per row of points."""
        return self.dtype.itemsize * self.width

    @property
    def is_dense(self) -> bool:
        """Tell whether every point is valid (PointCloud2's ``is_dense``)."""
        return self.valid == self.height * self.width

    def points(self) -> np.ndarray:
        """Return the points as a read-only height x width structured array (a view)."""
        view = np.frombuffer(self.data, dtype=self.dtype).reshape(self.height, self.width)
        view.flags.writeable = False
        return view


def _check(labels: np.ndarray, depth_m: np.ndarray, confidence: Optional[np.ndarray],
           min_depth: float, max_depth: float, stride: int) -> None:
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f'labels must be H x W uint8, got {labels.shape} {labels.dtype}')
    if depth_m.ndim != 2 or depth_m.dtype != np.float32 or 0 in depth_m.shape:
        raise DepthError(f'depth must be a non-empty H x W float32 map in metres, got '
                         f'{depth_m.shape} {depth_m.dtype}')
    if confidence is not None and confidence.shape != labels.shape:
        raise ValueError(f"confidence {confidence.shape} is not the labels' {labels.shape}")
    if not 0.0 <= min_depth < max_depth:
        raise ValueError(f'need 0 <= min_depth < max_depth, got {min_depth} and {max_depth}')
    if stride < 1:
        raise ValueError(f'stride must be at least 1, got {stride}')


def build_cloud(labels: np.ndarray, depth_m: np.ndarray, k: np.ndarray, *,
                label_rgb: np.ndarray, confidence: Optional[np.ndarray] = None,
                min_depth: float = 0.0, max_depth: float = float('inf'),
                stride: int = 1) -> OrganizedCloud:
    """
    Back-project ``depth_m`` on the grid of ``labels`` into a labelled organized cloud.

    ``labels`` (H x W uint8) fixes the grid; ``depth_m`` (float32 metres) may have another
    size with the same field of view; ``k`` is its 3x3 camera matrix (see
    :func:`espnet_ros.imaging.depth.depth_intrinsics`); ``label_rgb`` maps a class id to its
    packed colour (:func:`pack_rgb`); ``confidence`` adds the confidence field.
    """
    _check(labels, depth_m, confidence, min_depth, max_depth, stride)
    kept_labels = labels[::stride, ::stride]
    if int(kept_labels.max(initial=0)) >= len(label_rgb):
        raise ValueError(f'label {int(kept_labels.max())} has no colour; the palette has '
                         f'{len(label_rgb)} classes')
    rows = nearest_indices(labels.shape[0], depth_m.shape[0], stride)
    cols = nearest_indices(labels.shape[1], depth_m.shape[1], stride)
    height, width = len(rows), len(cols)
    fx, cx, fy, cy = k[0, 0], k[0, 2], k[1, 1], k[1, 2]
    ray_x = ((cols - cx) / fx).astype(np.float32)
    ray_y = ((rows - cy) / fy).astype(np.float32)[:, None]
    same_grid = depth_m.shape == labels.shape and stride == 1

    dtype = cloud_dtype(confidence is not None)
    # Repeating one byte sizes the buffer in a single pass, with no intermediate copy.
    data = array.array('B', b'\0') * (height * width * dtype.itemsize)
    points = np.frombuffer(data, dtype=dtype).reshape(height, width)
    valid_count = 0
    # Band by band, so that the interleaved fields of a band are written while it is in the
    # cache: one trip through memory instead of one per field.
    band_rows = max(1, _BAND_BYTES // (width * dtype.itemsize))
    for top in range(0, height, band_rows):
        band = slice(top, top + band_rows)
        out = points[band]
        depth = depth_m[band] if same_grid else depth_m[rows[band, None], cols]
        # Comparisons with NaN are false, so NaN and +-inf fall out with the range test.
        valid = (depth > 0) & (depth >= min_depth) & (depth <= max_depth)
        valid_count += int(np.count_nonzero(valid))
        z = np.where(valid, depth, np.float32(np.nan))
        out['z'] = z
        np.multiply(ray_x, z, out=out['x'])
        np.multiply(ray_y[band], z, out=out['y'])
        out_labels = kept_labels[band]
        out['label'] = out_labels
        out['rgb'] = label_rgb[out_labels]
        if confidence is not None:
            out['confidence'] = confidence[::stride, ::stride][band]
    return OrganizedCloud(height, width, dtype, data, valid_count)


def select_label(cloud: OrganizedCloud, label: int) -> OrganizedCloud:
    """
    Return the valid points of ``cloud`` labelled ``label`` as a dense cloud (height 1).

    Same fields, in the organized cloud's row-major order, without the NaN points: what
    Nav2's voxel and STVL layers and point-cloud filters read as an observation source.
    """
    points = np.frombuffer(cloud.data, dtype=cloud.dtype)
    # z is NaN exactly where the depth was invalid (see build_cloud).
    chosen = (points['label'] == label) & ~np.isnan(points['z'])
    count = int(np.count_nonzero(chosen))
    data = array.array('B', b'\0') * (count * cloud.dtype.itemsize)
    # Written once, straight into the buffer the message will hold.
    np.compress(chosen, points, out=np.frombuffer(data, dtype=cloud.dtype))
    return OrganizedCloud(1, count, cloud.dtype, data, count)
