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
ROS-free conversion between sensor_msgs image payloads and numpy arrays.

The node passes the plain message fields, so nothing here imports ROS. Decoding always
yields a read-only H x W x 3 uint8 array plus the channel order it is in (``'rgb'`` or
``'bgr'``), so a BGR camera feeding a BGR network is never swapped twice.

================================  ==========================================================
encoding                          result (``order``; copy or view of the message buffer)
================================  ==========================================================
rgb8 / bgr8                       view (rgb / bgr)
8UC3                              as bgr8, the OpenCV convention: view (bgr)
rgba8 / bgra8, 8UC4 (as bgra8)    view that skips alpha (rgb / bgr)
mono8, 8UC1                       grey in all 3 channels, stride-0 view (rgb)
rgb16 / bgr16, 16UC3 (as bgr16)   high byte of each sample (``>> 8``): view (rgb / bgr)
rgba16 / bgra16, 16UC4            high bytes, alpha skipped: view (rgb / bgr)
mono16, 16UC1                     high byte (``>> 8``), stride-0 grey view (rgb)
bayer_{rggb,bggr,gbrg,grbg}8      OpenCV bilinear demosaic: copy (rgb)
bayer_{rggb,bggr,gbrg,grbg}16     high byte, then demosaic: copy (rgb)
uyvy, yuv422 (UYVY)               OpenCV YUV 4:2:2 conversion, even width: copy (rgb)
yuyv, yuv422_yuy2 (YUYV)          as above
nv12 / nv21                       Y plane then interleaved UV / VU plane at half height;
                                  data is step * height * 3/2; even width/height: copy (rgb)
================================  ==========================================================

Refused with :class:`ImageFormatError`: signed, 32-bit and float types (``8SC*``, ``16SC*``,
``32SC*``, ``32FC*``, ``64FC*``: depth or feature maps with no defined colour mapping),
2-channel ``8UC2``/``16UC2`` and ``nv24`` (no agreed layout), any other name, and every
malformed message: data shorter *or* longer than its declared size, a step shorter than a
row, zero or out-of-range sizes, more than ``max_pixels`` pixels.

``is_bigendian`` is honoured for 16-bit encodings (it picks which byte is the high byte, so
both byte orders stay zero-copy) and has no meaning for 8-bit ones, where it is ignored.
Views share memory with the message, which is why they are read-only; copy before writing.
"""

import array
from dataclasses import dataclass
import re
from typing import Any, NamedTuple, Optional, Union

import cv2
import numpy as np

from espnet_ros.imaging.image_header import HeaderError, read_header

__all__ = ['CONFIDENCE_ENCODINGS', 'DecodedImage', 'EncodedImage', 'ImageFormatError',
           'SUPPORTED_ENCODINGS', 'decode_compressed', 'decode_image', 'encode_32fc1',
           'encode_confidence', 'encode_mono8', 'encode_rgb8']

BytesLike = Union[bytes, bytearray, memoryview, array.array, np.ndarray]

_UINT32_MAX = 2 ** 32 - 1

# encoding: (bytes per sample, samples per pixel, channel order of the first three samples)
_PACKED = {
    'rgb8': (1, 3, 'rgb'), 'bgr8': (1, 3, 'bgr'), '8UC3': (1, 3, 'bgr'),
    'rgba8': (1, 4, 'rgb'), 'bgra8': (1, 4, 'bgr'), '8UC4': (1, 4, 'bgr'),
    'mono8': (1, 1, 'rgb'), '8UC1': (1, 1, 'rgb'),
    'rgb16': (2, 3, 'rgb'), 'bgr16': (2, 3, 'bgr'), '16UC3': (2, 3, 'bgr'),
    'rgba16': (2, 4, 'rgb'), 'bgra16': (2, 4, 'bgr'), '16UC4': (2, 4, 'bgr'),
    'mono16': (2, 1, 'rgb'), '16UC1': (2, 1, 'rgb'),
}
# OpenCV names Bayer codes after the same 2x2 tile that ROS does, so the names line up.
_BAYER = {
    f'bayer_{tile}{bits}': (bits // 8, getattr(cv2, f'COLOR_Bayer{tile.upper()}2RGB'))
    for tile in ('rggb', 'bggr', 'gbrg', 'grbg') for bits in (8, 16)
}
_YUV422 = {'uyvy': cv2.COLOR_YUV2RGB_UYVY, 'yuv422': cv2.COLOR_YUV2RGB_UYVY,
           'yuyv': cv2.COLOR_YUV2RGB_YUY2, 'yuv422_yuy2': cv2.COLOR_YUV2RGB_YUY2}
_YUV420 = {'nv12': cv2.COLOR_YUV2RGB_NV12, 'nv21': cv2.COLOR_YUV2RGB_NV21}

SUPPORTED_ENCODINGS = tuple(sorted([*_PACKED, *_BAYER, *_YUV422, *_YUV420]))

# Encodings of the confidence image: the probability itself, or 0..255 as Nav2's semantic
# segmentation layer reads it.
CONFIDENCE_ENCODINGS = ('32FC1', 'mono8')
_MONO8_FULL_SCALE = 255

_CV_TYPE = re.compile(r'(8|16|32|64)([USF])C(\d*)')


class ImageFormatError(ValueError):
    """An image message that cannot be turned into an H x W x 3 uint8 array."""


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image: read-only H x W x 3 uint8 ``pixels`` in channel ``order``."""

    pixels: np.ndarray
    order: str

    def to_order(self, order: str) -> np.ndarray:
        """Return the pixels in ``order`` ('rgb' or 'bgr'); a reversed view when swapping."""
        if order not in ('rgb', 'bgr'):
            raise ValueError(f"order must be 'rgb' or 'bgr', got {order!r}")
        return self.pixels if order == self.order else self.pixels[..., ::-1]


class EncodedImage(NamedTuple):
    """Fields for a sensor_msgs/Image; ``data`` can be assigned to ``Image.data`` as is."""

    encoding: str
    step: int
    data: array.array


def _as_bytes(data: BytesLike) -> np.ndarray:
    """View any C-contiguous buffer as flat uint8 without copying."""
    if isinstance(data, (list, tuple, str)):
        raise ImageFormatError(f'data must be a bytes-like buffer, got {type(data).__name__}')
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError) as error:
        raise ImageFormatError(
            f'data must be a C-contiguous bytes-like buffer, got {type(data).__name__}: '
            f'{error}') from None


def _field(name: str, value: int) -> int:
    """Check that a message field is an integer that fits the uint32 it came from."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ImageFormatError(f'{name} must be an integer, got {type(value).__name__}')
    if not 0 <= value <= _UINT32_MAX:
        raise ImageFormatError(f'{name} {value} is outside the uint32 range of the message')
    return int(value)


def _check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    """Raise ImageFormatError if a ``width`` x ``height`` image is over ``max_pixels``."""
    if width * height > max_pixels:
        raise ImageFormatError(f'{what} {width * height:,} pixels ({width}x{height}), '
                               f'more than the limit of {max_pixels:,} (max_pixels)')


def _refusal(encoding: str) -> str:
    """Explain why an encoding is not decoded."""
    match = _CV_TYPE.fullmatch(encoding)
    if match and (match[2] != 'U' or match[1] in ('32', '64')):
        return (f'encoding {encoding!r} holds signed, 32-bit or float samples (depth or '
                'feature maps) with no defined mapping to 8-bit colour; convert it upstream')
    if match or encoding == 'nv24':
        return f'encoding {encoding!r} has no agreed colour layout and is not supported'
    return f"unsupported encoding {encoding!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})"


def _layout(encoding: str, width: int, height: int) -> tuple[int, int]:
    """Return (bytes per pixel in a row, rows of ``step`` bytes in the data)."""
    if encoding in _PACKED:
        sample_bytes, samples, _ = _PACKED[encoding]
        return sample_bytes * samples, height
    if encoding in _BAYER:
        return _BAYER[encoding][0], height
    if width % 2:
        raise ImageFormatError(f'{encoding} needs an even width, got {width}')
    if encoding in _YUV422:
        return 2, height
    if height % 2:
        raise ImageFormatError(f'{encoding} needs an even height, got {height}')
    return 1, height * 3 // 2


def _frozen(rgb: np.ndarray, order: str = 'rgb') -> DecodedImage:
    """Wrap a freshly converted array, read-only like the views."""
    rgb.flags.writeable = False
    return DecodedImage(rgb, order)


def decode_image(encoding: str, height: int, width: int, step: int, data: BytesLike, *,
                 is_bigendian: bool = False, max_pixels: Optional[int] = None) -> DecodedImage:
    """
    Decode sensor_msgs/Image fields into a read-only H x W x 3 uint8 image.

    ``data`` may be bytes, bytearray, memoryview, array.array('B') (what rclpy gives) or a
    numpy array; it is viewed with ``np.frombuffer`` so the packed encodings cost no copy.
    Raises :class:`ImageFormatError` for anything that is not a well-formed supported image.
    """
    if not isinstance(encoding, str):
        raise ImageFormatError(f'encoding must be a str, got {type(encoding).__name__}')
    if encoding not in SUPPORTED_ENCODINGS:
        raise ImageFormatError(_refusal(encoding))
    height, width, step = _field('height', height), _field('width', width), _field('step', step)
    if width == 0 or height == 0:
        raise ImageFormatError(f'image is {width}x{height} (width x height); both must be > 0')
    if max_pixels is not None:
        _check_pixels(width, height, max_pixels, 'image has')
    pixel_bytes, rows = _layout(encoding, width, height)
    if step < width * pixel_bytes:
        raise ImageFormatError(f'step {step} is smaller than a row of {width} px x '
                               f'{pixel_bytes} bytes = {width * pixel_bytes}')
    buffer = _as_bytes(data)
    if buffer.size != step * rows:
        declared = 'step*height' if rows == height else 'step*height*3/2'
        raise ImageFormatError(f'data is {buffer.size} bytes, expected {declared} = '
                               f'{step * rows} (step {step}, height {height})')
    if encoding in _PACKED:
        sample_bytes, samples, order = _PACKED[encoding]
        # The high byte of a 16-bit sample is its >> 8; picking it keeps the result a view.
        high = 0 if is_bigendian else sample_bytes - 1
        channel_stride = sample_bytes if samples >= 3 else 0
        pixels = np.lib.stride_tricks.as_strided(
            buffer[high:], shape=(height, width, 3),
            strides=(step, pixel_bytes, channel_stride), writeable=False)
        return DecodedImage(pixels, order)
    plane = buffer.reshape(rows, step)
    if encoding in _BAYER:
        sample_bytes, code = _BAYER[encoding]
        high = 0 if is_bigendian else sample_bytes - 1
        mosaic = plane[:, high:width * sample_bytes:sample_bytes]
        if sample_bytes > 1:
            mosaic = np.ascontiguousarray(mosaic)
        return _frozen(cv2.cvtColor(mosaic, code))
    if encoding in _YUV422:
        packed = plane[:, :2 * width].reshape(height, width, 2)
        return _frozen(cv2.cvtColor(packed, _YUV422[encoding]))
    return _frozen(cv2.cvtColor(plane[:, :width], _YUV420[encoding]))


def decode_compressed(fmt: str, data: BytesLike, *,
                      max_pixels: Optional[int] = None) -> DecodedImage:
    """
    Decode a sensor_msgs/CompressedImage (JPEG, PNG, or anything cv2.imdecode reads).

    ``fmt`` is the message's ``format`` field ('jpeg', 'png', 'rgb8; jpeg compressed bgr8',
    ...); it is informational, as OpenCV finds the codec from the payload itself. Grey, alpha
    and 16-bit images are reduced to 8-bit BGR by OpenCV. With ``max_pixels`` the size is read
    from the header first (:mod:`espnet_ros.imaging.image_header`) and a larger image is refused
    before anything is allocated, so only the formats whose header is read there (JPEG, PNG,
    WebP, BMP) are accepted; without it, anything OpenCV reads is decoded, within OpenCV's own
    limit (OPENCV_IO_MAX_IMAGE_PIXELS).
    """
    if not isinstance(fmt, str):
        raise ImageFormatError(f'format must be a str, got {type(fmt).__name__}')
    if 'compresseddepth' in fmt.lower():
        raise ImageFormatError(f'format {fmt!r} is a compressedDepth depth map, '
                               'not a colour image')
    buffer = _as_bytes(data)
    if buffer.size == 0:
        raise ImageFormatError(f'compressed image ({fmt!r}) has an empty payload')
    if max_pixels is not None:
        try:
            header = read_header(buffer)
        except HeaderError as error:
            raise ImageFormatError(f'cannot read the size of a {buffer.size}-byte {fmt!r} '
                                   f'payload before decoding it: {error}') from None
        _check_pixels(header.width, header.height, max_pixels,
                      f'{header.kind} header declares')
    try:
        bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as error:
        raise ImageFormatError(f'cannot decode {buffer.size}-byte {fmt!r} payload: '
                               f'{error}') from None
    if bgr is None:
        raise ImageFormatError(f'cannot decode {buffer.size}-byte {fmt!r} payload '
                               '(corrupt or not an image format OpenCV reads)')
    if max_pixels is not None:  # the header said otherwise: never hand out more than the limit
        _check_pixels(bgr.shape[1], bgr.shape[0], max_pixels, 'image has')
    return _frozen(bgr, 'bgr')


def decode_message(message: Any, *, max_pixels: Optional[int] = None) -> DecodedImage:
    """
    Decode a sensor_msgs/Image or sensor_msgs/CompressedImage into an H x W x 3 uint8 image.

    The message is read by its fields alone (a CompressedImage has ``format``), so rclpy's
    messages, rosbags' and plain objects with the same fields take the same path.
    """
    if hasattr(message, 'format'):
        return decode_compressed(message.format, message.data, max_pixels=max_pixels)
    return decode_image(message.encoding, message.height, message.width, message.step,
                        message.data, is_bigendian=bool(message.is_bigendian),
                        max_pixels=max_pixels)


def _pack(encoding: str, image: np.ndarray) -> EncodedImage:
    """Copy an image into the array.array that rclpy stores for uint8[] fields."""
    # array.array is what the message keeps: assigning one costs a memcpy (or nothing with
    # ROS_PYTHON_CHECK_FIELDS=1), where bytes or numpy arrays take a slow per-element path.
    contiguous = np.ascontiguousarray(image)
    data = array.array('B')
    data.frombytes(contiguous.reshape(-1).view(np.uint8))
    return EncodedImage(encoding, contiguous.strides[0], data)


def encode_mono8(labels: np.ndarray) -> EncodedImage:
    """Pack an H x W uint8 label map as ('mono8', step, data) for a sensor_msgs/Image."""
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f'labels must be H x W uint8, got {labels.shape} {labels.dtype}')
    return _pack('mono8', labels)


def encode_rgb8(image: np.ndarray) -> EncodedImage:
    """Pack an H x W x 3 uint8 RGB image as ('rgb8', step, data) for a sensor_msgs/Image."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f'image must be H x W x 3 uint8, got {image.shape} {image.dtype}')
    return _pack('rgb8', image)


def encode_32fc1(values: np.ndarray) -> EncodedImage:
    """Pack an H x W float map as little-endian ('32FC1', step, data) for a sensor_msgs/Image."""
    if values.ndim != 2 or values.dtype.kind != 'f':
        raise ValueError(f'values must be an H x W float array, got {values.shape} '
                         f'{values.dtype}')
    return _pack('32FC1', values.astype('<f4', copy=False))


def encode_confidence(probability: np.ndarray, encoding: str) -> EncodedImage:
    """
    Pack an H x W map of probabilities in [0, 1] as ``32FC1`` or as ``mono8``.

    ``mono8`` rounds ``probability * 255`` to the nearest integer (1.0 -> 255, 0.5 -> 128),
    the 0-255 confidence of Nav2's semantic segmentation layer; its rows are unpadded, so
    ``step`` equals the width and pixel (u, v) is byte ``v * width + u``.
    """
    if encoding == '32FC1':
        return encode_32fc1(probability)
    if encoding != 'mono8':
        raise ValueError(f'confidence encoding must be one of {", ".join(CONFIDENCE_ENCODINGS)}'
                         f'; got {encoding!r}')
    if probability.ndim != 2 or probability.dtype.kind != 'f':
        raise ValueError(f'probability must be an H x W float array, got {probability.shape} '
                         f'{probability.dtype}')
    scaled = np.rint(np.clip(probability, 0.0, 1.0) * _MONO8_FULL_SCALE).astype(np.uint8)
    return _pack('mono8', scaled)
