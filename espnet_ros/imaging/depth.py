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
ROS-free depth images (REP 118): decoding to metres and the checks a registered depth passes.

A depth image registered to the colour camera (RealSense ``aligned_depth_to_color``,
depth_image_proc's register node) shares the colour camera's optical frame and field of
view, so its pixels correspond to the colour pixels through the ratio of the two sizes.
``16UC1`` holds millimetres, ``32FC1`` metres; 0 and NaN mean no measurement, +inf too far
and -inf too close. Anything else is refused with :class:`DepthError`, which names what was
expected.
"""

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from espnet_ros.imaging.camera_model import scale_intrinsics
from espnet_ros.imaging.codec import _as_bytes, _field, BytesLike, ImageFormatError

__all__ = ['DEPTH_ENCODINGS', 'DepthError', 'DepthImage', 'MILLIMETRE', 'decode_depth',
           'decode_depth_message', 'depth_intrinsics', 'registration_error']

MILLIMETRE = 1e-3
# encoding: (sample type, metres per unit)
DEPTH_ENCODINGS = {'16UC1': ('u2', MILLIMETRE), '32FC1': ('f4', 1.0)}
# Scaled sensor modes round sizes to whole pixels (424x240 beside 1280x720), so the aspect
# ratios of a registered depth and its colour image agree to this fraction, not exactly.
ASPECT_TOLERANCE = 0.02
# A focal length in pixels, as a multiple of the image side, that a real camera can have:
# 0.05 is a field of view of about 169 degrees (fisheye lenses are not pinholes anyway), 100
# one of about 0.6 degrees. Outside, K is not a calibration (fx = 1e-300 put every point at
# infinity).
MIN_FOCAL_PER_SIDE = 0.05
MAX_FOCAL_PER_SIDE = 100.0


class DepthError(ValueError):
    """A depth image or depth CameraInfo from which no cloud can be built."""


@dataclass(frozen=True)
class DepthImage:
    """A depth map in metres (H x W float32, read-only) and its count of negative samples."""

    metres: np.ndarray
    negative: int

    @property
    def size(self) -> tuple[int, int]:
        """Return (width, height)."""
        return self.metres.shape[1], self.metres.shape[0]


def decode_depth(encoding: str, height: int, width: int, step: int, data: BytesLike, *,
                 is_bigendian: bool = False) -> DepthImage:
    """
    Decode sensor_msgs/Image depth fields into metres.

    Rows padded beyond the width (``step``) and either byte order are handled. Negative
    samples (possible in 32FC1 only) are counted, as REP 118 allows none; the caller treats
    them as invalid like 0 and NaN.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise DepthError(f'depth encoding {encoding!r} is not supported; expected 16UC1 '
                         '(millimetres) or 32FC1 (metres), as REP 118 defines')
    try:
        height, width, step = (_field('height', height), _field('width', width),
                               _field('step', step))
        buffer = _as_bytes(data)
    except ImageFormatError as error:
        raise DepthError(f'malformed depth image: {error}') from None
    sample, scale = DEPTH_ENCODINGS[encoding]
    sample_bytes = int(sample[1])
    if width == 0 or height == 0:
        raise DepthError(f'depth image is {width}x{height} (width x height); both must be > 0')
    if step < width * sample_bytes or step % sample_bytes:
        raise DepthError(f'depth step {step} does not hold a row of {width} {encoding} '
                         f'samples ({width * sample_bytes} bytes, a multiple of {sample_bytes})')
    if buffer.size != step * height:
        raise DepthError(f'depth data is {buffer.size} bytes, expected step*height = '
                         f'{step * height} (step {step}, height {height})')
    dtype = np.dtype(sample).newbyteorder('>' if is_bigendian else '<')
    samples = buffer.view(dtype).reshape(height, step // sample_bytes)[:, :width]
    if scale == 1.0:
        metres = samples.astype(np.float32, copy=False)
        # -inf is REP 118's "too close"; finite negatives are no measurement at all.
        negative = int(np.count_nonzero((metres < 0) & np.isfinite(metres)))
    else:
        metres = samples.astype(np.float32) * np.float32(scale)
        negative = 0
    if metres.flags.writeable:
        metres.flags.writeable = False
    return DepthImage(metres, negative)


def decode_depth_message(message: Any) -> DepthImage:
    """Decode a sensor_msgs/Image depth message, read by its fields (rclpy or rosbags)."""
    return decode_depth(message.encoding, message.height, message.width, message.step,
                        message.data, is_bigendian=bool(message.is_bigendian))


def depth_intrinsics(k: Sequence[float], info_size: tuple[int, int],
                     depth_size: tuple[int, int]) -> np.ndarray:
    """
    Return the 3x3 camera matrix of the depth image from its CameraInfo.

    ``info_size`` is the CameraInfo's (width, height); (0, 0) means "the image's own". A
    CameraInfo for another resolution is rescaled to the depth image's (image_proc's rule).
    """
    matrix = np.asarray(k, dtype=np.float64)
    if matrix.shape != (9,) or not np.isfinite(matrix).all():
        raise DepthError(f'depth CameraInfo K must be 9 finite numbers, got {list(k)}')
    if info_size[0] and info_size[1] and tuple(info_size) != tuple(depth_size):
        scaled, _ = scale_intrinsics(matrix, np.zeros(12), from_size=info_size,
                                     to_size=depth_size)
        matrix = np.asarray(scaled)
    matrix = matrix.reshape(3, 3)
    if matrix[0, 0] <= 0 or matrix[1, 1] <= 0:
        raise DepthError(f'depth CameraInfo K has fx={matrix[0, 0]:g}, fy={matrix[1, 1]:g}: '
                         'the camera is not calibrated (both must be > 0)')
    for name, focal, side in (('fx', matrix[0, 0], depth_size[0]),
                              ('fy', matrix[1, 1], depth_size[1])):
        if not MIN_FOCAL_PER_SIDE * side <= focal <= MAX_FOCAL_PER_SIDE * side:
            raise DepthError(
                f'depth CameraInfo K has {name}={focal:g} pixels for a depth image '
                f'{depth_size[0]}x{depth_size[1]}: not a calibration (expected '
                f'{MIN_FOCAL_PER_SIDE:g} to {MAX_FOCAL_PER_SIDE:g} times the image side, '
                f'{MIN_FOCAL_PER_SIDE * side:g} to {MAX_FOCAL_PER_SIDE * side:g} pixels)')
    return matrix


def registration_error(depth_size: tuple[int, int], camera_size: tuple[int, int],
                       depth_frame: str, camera_frame: str) -> Optional[str]:
    """
    Return why a depth image cannot be registered to the colour camera, or None.

    A registered depth image is in the colour camera's optical frame and covers its field of
    view, so its aspect ratio is the colour image's; any size with that aspect is accepted.
    """
    if depth_frame != camera_frame:
        return (f'depth frame_id {depth_frame!r} is not the colour frame_id {camera_frame!r}: '
                'the depth image must be registered to the colour camera (e.g. RealSense '
                'aligned_depth_to_color or depth_image_proc register)')
    depth_aspect = depth_size[0] / depth_size[1]
    camera_aspect = camera_size[0] / camera_size[1]
    if abs(depth_aspect / camera_aspect - 1.0) > ASPECT_TOLERANCE:
        return ('depth image {}x{} and colour image {}x{} have different aspect ratios: the '
                'depth image is not registered to the colour camera'.format(
                    *depth_size, *camera_size))
    return None
