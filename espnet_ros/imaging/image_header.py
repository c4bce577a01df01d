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
The size a compressed image declares in its header, read without decoding a pixel.

OpenCV allocates the whole image a header declares before it reads the pixel data, so a
629-byte JPEG declaring 30000x30000 costs gigabytes. Reading the header first lets a size
limit refuse it before anything is allocated. Each reader here walks its format's header
strictly, the way the decoder that OpenCV uses finds the size (the first JPEG frame header,
PNG's IHDR, the WebP canvas, the BMP info header); anything it cannot read is refused rather
than guessed, so a payload that reaches OpenCV has the size read here. Other formats OpenCV
reads (TIFF, PNM, JPEG 2000, OpenEXR, ...) are refused: ROS image transports do not send them,
and each would need a reader of its own. Pillow is not used for this: its WebP reader
allocates the canvas when it opens the file.
"""

import struct
from typing import Callable, NamedTuple, Union

__all__ = ['HeaderError', 'ImageHeader', 'HEADER_FORMATS', 'read_header']


class HeaderError(ValueError):
    """A payload whose header is not one of :data:`HEADER_FORMATS`, or is cut or malformed."""


class ImageHeader(NamedTuple):
    """The format (``kind``) and the (width, height) a compressed image declares."""

    kind: str
    width: int
    height: int


# JPEG markers without a length field: TEM, RST0-7 (SOI is read before the loop).
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
# Frame headers SOF0-SOF15, less DHT (C4), JPG (C8) and DAC (CC), which share the range.
_JPEG_FRAMES = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_SCAN, _JPEG_END = 0xDA, 0xD9
_BMP_CORE_HEADER = 12  # OS/2 1.x: 16-bit sizes; every later info header has 32-bit ones
_VP8_SIZE_MASK = (1 << 14) - 1  # lossy and lossless WebP store 14-bit sizes
_VP8L_SIGNATURE = 0x2F
_VP8_START_CODE = b'\x9d\x01\x2a'


def _unpack(fmt: str, data: memoryview, offset: int) -> tuple:
    """struct.unpack_from that raises HeaderError when the payload is too short."""
    if offset < 0 or offset + struct.calcsize(fmt) > len(data):
        raise HeaderError('the header is cut short')
    return struct.unpack_from(fmt, data, offset)


def _jpeg(data: memoryview) -> tuple[int, int]:
    offset = 2
    while True:
        (prefix,) = _unpack('B', data, offset)
        if prefix != 0xFF:
            raise HeaderError(f'no JPEG marker at byte {offset}')
        while offset + 1 < len(data) and data[offset + 1] == 0xFF:  # fill bytes
            offset += 1
        (marker,) = _unpack('B', data, offset + 1)
        offset += 2
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (_JPEG_SCAN, _JPEG_END):
            raise HeaderError('the JPEG has no frame header before its scan')
        (length,) = _unpack('>H', data, offset)
        if length < 2:
            raise HeaderError(f'JPEG segment length {length} at byte {offset}')
        if marker in _JPEG_FRAMES:
            _, height, width = _unpack('>BHH', data, offset + 2)
            if height == 0:
                raise HeaderError('the JPEG leaves its height to a DNL marker')
            return width, height
        offset += length


def _png(data: memoryview) -> tuple[int, int]:
    _, chunk, width, height = _unpack('>I4sII', data, 8)
    if chunk != b'IHDR':
        raise HeaderError('the PNG does not start with IHDR')
    return width, height


def _webp(data: memoryview) -> tuple[int, int]:
    (chunk,) = _unpack('4s', data, 12)
    if chunk == b'VP8X':  # extended: the canvas size, 24 bits each, minus one
        low_w, high_w, low_h, high_h = _unpack('<HBHB', data, 24)
        return (low_w | high_w << 16) + 1, (low_h | high_h << 16) + 1
    if chunk == b'VP8L':  # lossless: 14 bits each, minus one, after the 0x2f signature
        signature, bits = _unpack('<BI', data, 20)
        if signature != _VP8L_SIGNATURE:
            raise HeaderError('the lossless WebP has no signature')
        return (bits & _VP8_SIZE_MASK) + 1, (bits >> 14 & _VP8_SIZE_MASK) + 1
    if chunk == b'VP8 ':  # lossy: start code after the frame tag, then 14-bit sizes
        start, width, height = _unpack('<3sHH', data, 23)
        if start != _VP8_START_CODE:
            raise HeaderError('the lossy WebP has no start code')
        return width & _VP8_SIZE_MASK, height & _VP8_SIZE_MASK
    raise HeaderError(f'unknown WebP chunk {chunk!r}')


def _bmp(data: memoryview) -> tuple[int, int]:
    (info_size,) = _unpack('<I', data, 14)
    if info_size == _BMP_CORE_HEADER:
        return _unpack('<HH', data, 18)
    width, height = _unpack('<ii', data, 18)
    return width, abs(height)  # a negative height stores the rows top-down


# name: (does a payload start like this format, size reader); the signatures are those the
# decoders check, so no payload matches two formats.
_FORMATS: dict[str, tuple[Callable[[memoryview], bool],
                          Callable[[memoryview], tuple[int, int]]]] = {
    'JPEG': (lambda data: data[:3] == b'\xff\xd8\xff', _jpeg),
    'PNG': (lambda data: data[:8] == b'\x89PNG\r\n\x1a\n', _png),
    'WebP': (lambda data: data[:4] == b'RIFF' and data[8:12] == b'WEBP', _webp),
    'BMP': (lambda data: data[:2] == b'BM', _bmp),
}
HEADER_FORMATS = tuple(_FORMATS)


def read_header(payload: Union[bytes, bytearray, memoryview]) -> ImageHeader:
    """
    Return the format and size a compressed image's header declares.

    ``payload`` is any C-contiguous bytes-like buffer (a flat uint8 numpy array too); it is
    viewed, not copied. Raises :class:`HeaderError` for a payload that is not one of
    :data:`HEADER_FORMATS`, is cut short, or declares a zero size.
    """
    data = memoryview(payload).cast('B')
    for name, (matches, size) in _FORMATS.items():
        if matches(data):
            try:
                width, height = size(data)
            except HeaderError as error:
                raise HeaderError(f'{name} header: {error}') from None
            if width <= 0 or height <= 0:
                raise HeaderError(f'{name} header declares {width}x{height}')
            return ImageHeader(name, width, height)
    raise HeaderError(f"not {', '.join(HEADER_FORMATS[:-1])} or {HEADER_FORMATS[-1]} "
                      '(the formats whose size is checked before decoding)')
