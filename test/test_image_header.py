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
Compressed images' sizes read from their headers, and decompression bombs refused unread.

The sizes read must be the sizes OpenCV decodes, for every format and size; a cut or broken
header must raise HeaderError and nothing else; and a tiny payload declaring 30000x30000 must
be refused by the header check, before OpenCV allocates the 2.7 GB it declares.
"""

import resource
import struct
import zlib

import cv2
from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from espnet_ros.imaging.codec import decode_compressed, ImageFormatError
from espnet_ros.imaging.image_header import HeaderError, read_header

# OpenCV extension: our format name, with the encoder settings each kind of file needs.
ENCODINGS = {'.jpg': ('JPEG', []), '.png': ('PNG', []), '.bmp': ('BMP', []),
             '.webp': ('WebP', [cv2.IMWRITE_WEBP_QUALITY, 80]),
             'lossless.webp': ('WebP', [cv2.IMWRITE_WEBP_QUALITY, 101])}
BOMB = (30000, 30000)
LIMIT = 4096 * 4096


def encoded(extension: str, width: int, height: int, channels: int = 3) -> bytes:
    """Return a random ``width`` x ``height`` image encoded like ``extension``."""
    rng = np.random.default_rng(width * 131 + height)
    pixels = rng.integers(0, 256, (height, width, channels)[:3 if channels > 1 else 2], np.uint8)
    ok, payload = cv2.imencode(extension[-5:] if 'webp' in extension else extension, pixels,
                               ENCODINGS[extension][1])
    assert ok
    return payload.tobytes()


@settings(max_examples=60, deadline=None)
@given(extension=st.sampled_from(sorted(ENCODINGS)), width=st.integers(1, 300),
       height=st.integers(1, 300), channels=st.sampled_from([1, 3, 4]))
def test_the_size_read_is_the_size_opencv_decodes(extension: str, width: int, height: int,
                                                  channels: int) -> None:
    payload = encoded(extension, width, height, channels)
    header = read_header(payload)
    assert header.kind == ENCODINGS[extension][0]
    decoded = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    assert (header.width, header.height) == (decoded.shape[1], decoded.shape[0])


@settings(max_examples=200, deadline=None)
@given(extension=st.sampled_from(sorted(ENCODINGS)), cut=st.integers(0, 80),
       noise=st.binary(max_size=40), position=st.integers(0, 60))
def test_cut_or_damaged_headers_raise_header_error_only(extension: str, cut: int,
                                                        noise: bytes, position: int) -> None:
    payload = encoded(extension, 17, 9)
    for damaged in (payload[:cut], payload[:position] + noise + payload[position + len(noise):],
                    noise):
        try:
            header = read_header(damaged)
        except HeaderError:
            continue
        assert header.width > 0 and header.height > 0


def jpeg_bomb() -> bytes:
    """Return a small JPEG whose frame header declares BOMB."""
    payload = bytearray(encoded('.jpg', 16, 16))
    frame = payload.index(b'\xff\xc0')  # baseline SOF0: length, precision, height, width
    payload[frame + 5:frame + 9] = struct.pack('>HH', BOMB[1], BOMB[0])
    return bytes(payload)


def png_bomb() -> bytes:
    """Return a small PNG whose IHDR declares BOMB, with a valid CRC."""
    payload = bytearray(encoded('.png', 16, 16))
    payload[16:24] = struct.pack('>II', *BOMB)
    payload[29:33] = struct.pack('>I', zlib.crc32(bytes(payload[12:29])))
    return bytes(payload)


def webp_bomb() -> bytes:
    """Return a small lossless WebP whose header declares 16384x16384, the format's most."""
    payload = bytearray(encoded('lossless.webp', 16, 16))
    bits = struct.unpack_from('<I', payload, 21)[0] & ~((1 << 28) - 1)
    struct.pack_into('<I', payload, 21, bits | (16383 << 14) | 16383)
    return bytes(payload)


@pytest.mark.parametrize('bomb', [jpeg_bomb, png_bomb, webp_bomb])
def test_decompression_bombs_are_refused_before_decoding(bomb) -> None:
    payload = bomb()
    assert len(payload) < 4096
    header = read_header(payload)
    assert header.width * header.height > LIMIT
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageFormatError, match=f'{header.kind} header declares'):
        decode_compressed('jpeg', payload, max_pixels=LIMIT)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before
    assert grown_kib < LIMIT // 1024, f'peak memory grew by {grown_kib} KiB'


def test_formats_without_a_header_reader_are_refused_only_under_a_limit() -> None:
    tiff = cv2.imencode('.tiff', np.zeros((4, 5, 3), np.uint8))[1].tobytes()
    with pytest.raises(ImageFormatError, match='cannot read the size'):
        decode_compressed('tiff', tiff, max_pixels=LIMIT)
    assert decode_compressed('tiff', tiff).pixels.shape == (4, 5, 3)


def test_a_top_down_bmp_reads_its_height_positive() -> None:
    payload = bytearray(encoded('.bmp', 7, 5))
    height = struct.unpack_from('<i', payload, 22)[0]
    struct.pack_into('<i', payload, 22, -height)
    assert read_header(bytes(payload))[1:] == (7, 5)
