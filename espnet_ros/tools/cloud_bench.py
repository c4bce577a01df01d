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
The labelled cloud's cost against the library way, on the same data, in one run.

Both paths start from the same 16UC1 depth message, labels, confidence and depth camera
matrix, and end with a sensor_msgs/PointCloud2 whose bytes are checked to be identical:

- ours: :func:`decode_depth_message`, :func:`build_cloud` (fields written once into the
  message's buffer), :func:`point_cloud_message`;
- library: the same decoding and the same vectorised back-projection into a structured
  numpy array, packed by ``sensor_msgs_py.point_cloud2.create_cloud`` (its fastest input;
  a list of tuples is orders of magnitude slower).

Repetitions alternate between the two so that load from other processes hits both alike.
"""

from typing import Any, Sequence

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from sensor_msgs_py.point_cloud2 import create_cloud
from std_msgs.msg import Header

from espnet_ros.imaging.cloud import build_cloud, cloud_dtype, pack_rgb
from espnet_ros.imaging.depth import decode_depth_message, depth_intrinsics
from espnet_ros.ros.messages import point_cloud_message, point_fields
from espnet_ros.tools.depth_scenes import floor_and_wall
from espnet_ros.tools.timing import alternating_times
from espnet_ros.zoo.registry import DEFAULT_MODEL, get_spec

MIN_DEPTH_M, MAX_DEPTH_M = 0.1, 10.0
MM_PER_M = 1000  # a 16UC1 depth image holds millimetres


def scene(size: tuple[int, int], classes: int) -> dict[str, Any]:
    """Return a depth message (a floor, a wall, holes), labels, confidence and CameraInfo."""
    width, height = size
    metres, k = floor_and_wall(size)
    millimetres = np.round(metres * MM_PER_M).astype('<u2')
    depth = Image(header=Header(frame_id='camera'), height=height, width=width,
                  encoding='16UC1', is_bigendian=False, step=2 * width)
    depth.data = millimetres.tobytes()
    info = CameraInfo(width=width, height=height, k=k.reshape(-1).tolist())
    v, u = np.mgrid[0:height, 0:width]
    labels = ((u // 40 + v // 40) % classes).astype(np.uint8)
    # Seeded apart from the scene's dropouts, so that the two are not the same draws.
    confidence = np.random.default_rng(1).random((height, width), dtype=np.float32)
    return {'depth': depth, 'info': info, 'labels': labels, 'confidence': confidence}


def ours(data: dict[str, Any], label_rgb: np.ndarray) -> PointCloud2:
    """Return the cloud built the node's way."""
    depth = decode_depth_message(data['depth'])
    info = data['info']
    k = depth_intrinsics(info.k, (info.width, info.height), depth.size)
    cloud = build_cloud(data['labels'], depth.metres, k, label_rgb=label_rgb,
                        confidence=data['confidence'], min_depth=MIN_DEPTH_M,
                        max_depth=MAX_DEPTH_M)
    return point_cloud_message(data['depth'].header, cloud)


def library(data: dict[str, Any], label_rgb: np.ndarray) -> PointCloud2:
    """Return the same cloud with numpy back-projection and sensor_msgs_py's create_cloud."""
    depth = decode_depth_message(data['depth']).metres
    info = data['info']
    k = depth_intrinsics(info.k, (info.width, info.height), (depth.shape[1], depth.shape[0]))
    height, width = depth.shape
    valid = (depth > 0) & (depth >= MIN_DEPTH_M) & (depth <= MAX_DEPTH_M)
    z = np.where(valid, depth, np.float32(np.nan))
    dtype = cloud_dtype(True)
    points = np.empty((height, width), dtype)
    points['x'] = ((np.arange(width) - k[0, 2]) / k[0, 0]).astype(np.float32) * z
    points['y'] = ((np.arange(height) - k[1, 2]) / k[1, 1]).astype(np.float32)[:, None] * z
    points['z'] = z
    points['rgb'] = label_rgb[data['labels']]
    points['label'] = data['labels']
    points['confidence'] = data['confidence']
    # create_cloud reads an organized array as (width, height): same bytes, other shape.
    message = create_cloud(data['depth'].header, point_fields(dtype),
                           points.reshape(width, height))
    message.is_dense = bool(valid.all())
    return message


def _same(first: PointCloud2, second: PointCloud2) -> None:
    for name in ('height', 'width', 'point_step', 'row_step', 'fields', 'is_dense'):
        if getattr(first, name) != getattr(second, name):
            raise AssertionError(f'the two clouds differ in {name}')
    # NaN payloads compare as bytes, so the whole buffer must be identical.
    if bytes(first.data) != bytes(second.data):
        raise AssertionError('the two clouds differ in their bytes')


def run(sizes: Sequence[tuple[int, int]], repeats: int, warmup: int) -> list[dict[str, Any]]:
    """Time both paths at every size; return one row per size."""
    label_rgb = pack_rgb(get_spec(DEFAULT_MODEL).dataset.palette)
    classes = len(label_rgb)
    rows = []
    for size in sizes:
        data = scene(size, classes)
        paths = {'ours': lambda: ours(data, label_rgb),
                 'library': lambda: library(data, label_rgb)}
        _same(paths['ours'](), paths['library']())
        times = alternating_times(paths, repeats, warmup)
        medians = {name: float(np.median(values)) for name, values in times.items()}
        rows.append({
            'size': f'{size[0]}x{size[1]}', 'points': size[0] * size[1],
            'bytes': size[0] * size[1] * cloud_dtype(True).itemsize, 'repeats': repeats,
            'ours_median_ms': medians['ours'],
            'ours_p90_ms': float(np.percentile(times['ours'], 90)),
            'library_median_ms': medians['library'],
            'library_p90_ms': float(np.percentile(times['library'], 90)),
            'speedup': medians['library'] / medians['ours'],
        })
    return rows
