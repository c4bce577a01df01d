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

"""Tests for espnet_ros.imaging.codec: every encoding, every refusal, and random messages."""

import array
import subprocess
import sys

import cv2
from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from espnet_ros.imaging.codec import (decode_compressed, decode_image, DecodedImage, encode_32fc1,
                                      encode_mono8, encode_rgb8, ImageFormatError,
                                      SUPPORTED_ENCODINGS)

RNG = np.random.default_rng(7)
SOLID_RGB = (200, 100, 50)
CONTAINERS = [bytes, bytearray, lambda raw: array.array('B', raw),
              lambda raw: memoryview(bytearray(raw)), lambda raw: np.frombuffer(raw, np.uint8)]


def padded(rows: np.ndarray, pad: int) -> tuple[int, bytes]:
    """Lay out H x (row bytes) image rows with ``pad`` junk bytes after each; (step, data)."""
    flat = rows.reshape(rows.shape[0], -1).view(np.uint8)
    junk = np.full((flat.shape[0], pad), 0xEE, np.uint8)
    out = np.concatenate([flat, junk], axis=1)
    return out.shape[1], out.tobytes()


def decode(encoding: str, rows: np.ndarray, pad: int = 0, **kwargs) -> DecodedImage:
    """Decode an H x W (x C) array laid out as a message with ``pad`` bytes per row."""
    step, data = padded(rows, pad)
    return decode_image(encoding, rows.shape[0], rows.shape[1], step, data, **kwargs)


def yuv_of_solid() -> tuple[int, int, int]:
    """Return the (Y, U, V) OpenCV's converters use for SOLID_RGB."""
    planar = cv2.cvtColor(np.full((2, 2, 3), SOLID_RGB, np.uint8), cv2.COLOR_RGB2YUV_I420)
    return int(planar[0, 0]), int(planar[2, 0]), int(planar[2, 1])


def assert_solid(decoded: DecodedImage) -> None:
    """Check that a converted solid image is SOLID_RGB (to YUV rounding) and read-only."""
    assert decoded.order == 'rgb' and decoded.pixels.dtype == np.uint8
    assert not decoded.pixels.flags.writeable
    expected = np.broadcast_to(np.array(SOLID_RGB, np.uint8), decoded.pixels.shape)
    np.testing.assert_allclose(decoded.pixels, expected, atol=2)


@pytest.mark.parametrize('encoding, channels, order', [
    ('rgb8', 3, 'rgb'), ('bgr8', 3, 'bgr'), ('8UC3', 3, 'bgr'),
    ('rgba8', 4, 'rgb'), ('bgra8', 4, 'bgr'), ('8UC4', 4, 'bgr')])
@pytest.mark.parametrize('pad', [0, 5])
@pytest.mark.parametrize('container', CONTAINERS)
def test_packed_8bit_colour_is_a_view(encoding, channels, order, pad, container):
    """8-bit colour encodings come back as a read-only view with alpha skipped."""
    src = RNG.integers(0, 256, (3, 4, channels), np.uint8)
    step, raw = padded(src, pad)
    data = container(raw)
    decoded = decode_image(encoding, 3, 4, step, data)
    assert decoded.order == order
    np.testing.assert_array_equal(decoded.pixels, src[..., :3])
    assert np.shares_memory(decoded.pixels, np.frombuffer(data, np.uint8))
    assert not decoded.pixels.flags.writeable
    rgb = src[..., :3] if order == 'rgb' else src[..., 2::-1]
    np.testing.assert_array_equal(decoded.to_order('rgb'), rgb)
    np.testing.assert_array_equal(decoded.to_order('bgr'), rgb[..., ::-1])


@pytest.mark.parametrize('encoding', ['mono8', '8UC1'])
def test_mono8_broadcasts_grey(encoding):
    """Grey is repeated into three channels by a stride-0 view."""
    src = RNG.integers(0, 256, (5, 3), np.uint8)
    step, raw = padded(src, 3)
    data = array.array('B', raw)
    decoded = decode_image(encoding, 5, 3, step, data)
    assert decoded.pixels.shape == (5, 3, 3) and decoded.pixels.strides[2] == 0
    for channel in range(3):
        np.testing.assert_array_equal(decoded.pixels[..., channel], src)
    assert np.shares_memory(decoded.pixels, np.frombuffer(data, np.uint8))


@pytest.mark.parametrize('encoding, channels, order', [
    ('rgb16', 3, 'rgb'), ('bgr16', 3, 'bgr'), ('16UC3', 3, 'bgr'), ('rgba16', 4, 'rgb'),
    ('bgra16', 4, 'bgr'), ('16UC4', 4, 'bgr'), ('mono16', 1, 'rgb'), ('16UC1', 1, 'rgb')])
@pytest.mark.parametrize('bigendian', [False, True])
def test_16bit_keeps_high_byte_without_copy(encoding, channels, order, bigendian):
    """16-bit samples become their top 8 bits, in either byte order, as a view."""
    src = RNG.integers(0, 65536, (4, 3, channels), np.uint16)
    rows = src.astype('>u2' if bigendian else '<u2')
    step, raw = padded(rows, 4)
    data = bytearray(raw)
    decoded = decode_image(encoding, 4, 3, step, data, is_bigendian=bigendian)
    expected = (src >> 8).astype(np.uint8)
    expected = np.repeat(expected, 3, axis=2) if channels == 1 else expected[..., :3]
    assert decoded.order == order
    np.testing.assert_array_equal(decoded.pixels, expected)
    assert np.shares_memory(decoded.pixels, np.frombuffer(data, np.uint8))


@pytest.mark.parametrize('tile', ['rggb', 'bggr', 'gbrg', 'grbg'])
@pytest.mark.parametrize('bits, bigendian', [(8, False), (16, False), (16, True)])
def test_bayer_demosaics_each_tile(tile, bits, bigendian):
    """A solid colour sampled through each Bayer tile demosaics back to that colour."""
    index = {'r': 0, 'g': 1, 'b': 2}
    mosaic = np.empty((6, 8), np.uint16)
    for dy in range(2):
        for dx in range(2):
            mosaic[dy::2, dx::2] = SOLID_RGB[index[tile[2 * dy + dx]]]
    if bits == 16:
        mosaic = (mosaic << 8 | 0x55).astype('>u2' if bigendian else '<u2')
    else:
        mosaic = mosaic.astype(np.uint8)
    decoded = decode(f'bayer_{tile}{bits}', mosaic, pad=2, is_bigendian=bigendian)
    assert decoded.order == 'rgb' and decoded.pixels.shape == (6, 8, 3)
    np.testing.assert_array_equal(decoded.pixels[2:4, 2:6], np.full((2, 4, 3), SOLID_RGB))


@pytest.mark.parametrize('encoding, pattern', [
    ('uyvy', 'UYVY'), ('yuv422', 'UYVY'), ('yuyv', 'YUYV'), ('yuv422_yuy2', 'YUYV')])
def test_yuv422(encoding, pattern):
    """Packed 4:2:2 in both byte orders, with row padding."""
    y, u, v = yuv_of_solid()
    quad = {'UYVY': [u, y, v, y], 'YUYV': [y, u, y, v]}[pattern]
    rows = np.tile(np.array(quad, np.uint8), (4, 3)).reshape(4, 6, 2)
    assert_solid(decode(encoding, rows, pad=6))


@pytest.mark.parametrize('encoding', ['nv12', 'nv21'])
def test_yuv420_semi_planar(encoding):
    """NV12/NV21: full Y plane then a half-height interleaved chroma plane, padded rows."""
    y, u, v = yuv_of_solid()
    pair = [u, v] if encoding == 'nv12' else [v, u]
    width, height, step = 6, 4, 10
    planes = np.zeros((height * 3 // 2, step), np.uint8)
    planes[:height, :width] = y
    planes[height:, :width] = np.tile(pair, width // 2)
    assert_solid(decode_image(encoding, height, width, step, planes.tobytes()))


def test_rclpy_message_data_is_viewed_in_place():
    """What rclpy hands the callback (array.array('B')) decodes without a copy."""
    serialization = pytest.importorskip('rclpy.serialization')
    msg_module = pytest.importorskip('sensor_msgs.msg')
    src = RNG.integers(0, 256, (3, 4, 3), np.uint8)
    encoded = encode_rgb8(src)
    msg = msg_module.Image(height=3, width=4, encoding=encoded.encoding, step=encoded.step)
    msg.data = encoded.data
    received = serialization.deserialize_message(
        serialization.serialize_message(msg), msg_module.Image)
    assert isinstance(received.data, array.array)
    decoded = decode_image(received.encoding, received.height, received.width,
                           received.step, received.data, is_bigendian=received.is_bigendian)
    np.testing.assert_array_equal(decoded.pixels, src)
    assert np.shares_memory(decoded.pixels, np.frombuffer(received.data, np.uint8))


def test_numpy_integer_fields_are_accepted():
    """Numpy integers (e.g. from a recorded array) work as field values."""
    decoded = decode_image('mono8', np.uint32(2), np.int64(2), np.uint32(2), bytes(4))
    assert decoded.pixels.shape == (2, 2, 3)


@pytest.mark.parametrize('encoding, height, width, step, size, message', [
    ('foo', 2, 2, 6, 12, "unsupported encoding 'foo' (supported: 16UC1"),
    ('RGB8', 2, 2, 6, 12, "unsupported encoding 'RGB8'"),
    ('32FC1', 2, 2, 8, 16, "'32FC1' holds signed, 32-bit or float samples"),
    ('64FC3', 2, 2, 48, 96, "'64FC3' holds signed"),
    ('16SC1', 2, 2, 4, 8, "'16SC1' holds signed"),
    ('8SC3', 2, 2, 6, 12, "'8SC3' holds signed"),
    ('32SC1', 2, 2, 8, 16, "'32SC1' holds signed"),
    ('8UC2', 2, 2, 4, 8, "'8UC2' has no agreed colour layout"),
    ('16UC2', 2, 2, 8, 16, "'16UC2' has no agreed colour layout"),
    ('nv24', 2, 2, 4, 12, "'nv24' has no agreed colour layout"),
    ('rgb8', 4, 4, 12, 40, 'data is 40 bytes, expected step*height = 48'),
    ('rgb8', 4, 4, 12, 49, 'data is 49 bytes, expected step*height = 48'),
    ('rgb8', 4, 4, 12, 0, 'data is 0 bytes, expected step*height = 48'),
    ('nv12', 4, 4, 4, 16, 'data is 16 bytes, expected step*height*3/2 = 24'),
    ('rgb8', 2, 4, 10, 20, 'step 10 is smaller than a row of 4 px x 3 bytes = 12'),
    ('mono16', 2, 4, 7, 14, 'step 7 is smaller than a row of 4 px x 2 bytes = 8'),
    ('rgb8', 480, 0, 0, 0, 'image is 0x480 (width x height); both must be > 0'),
    ('rgb8', 0, 640, 1920, 0, 'image is 640x0'),
    ('rgb8', -1, 2, 6, 12, 'height -1 is outside the uint32 range'),
    ('rgb8', 2, 2 ** 32, 6, 12, 'width 4294967296 is outside the uint32 range'),
    ('rgb8', 2, 2, -6, 12, 'step -6 is outside'),
    ('rgb8', 2.0, 2, 6, 12, 'height must be an integer, got float'),
    ('rgb8', 2, True, 6, 12, 'width must be an integer, got bool'),
    ('rgb8', 2, 2, None, 12, 'step must be an integer, got NoneType'),
    ('yuv422', 2, 3, 6, 12, 'yuv422 needs an even width, got 3'),
    ('nv21', 3, 2, 2, 9, 'nv21 needs an even height, got 3'),
    (b'rgb8', 2, 2, 6, 12, 'encoding must be a str, got bytes'),
])
def test_refusals_say_what_is_wrong(encoding, height, width, step, size, message):
    """Every malformed or unsupported message raises ImageFormatError with specifics."""
    with pytest.raises(ImageFormatError) as caught:
        decode_image(encoding, height, width, step, bytes(size))
    assert message in str(caught.value)


def test_absurd_sizes_fail_without_allocating():
    """Maximal uint32 fields with a tiny payload are rejected on the length check."""
    big = 2 ** 32 - 1
    with pytest.raises(ImageFormatError, match='data is 3 bytes, expected step'):
        decode_image('mono8', big, big, big, bytes(3))


def test_max_pixels():
    """Images larger than max_pixels are refused before the payload is looked at."""
    with pytest.raises(ImageFormatError, match=r'image has 50,000,000 pixels \(10000x5000\), '
                       r'more than the limit of 8,000,000'):
        decode_image('rgb8', 5000, 10000, 30000, b'', max_pixels=8_000_000)
    assert decode_image('mono8', 2, 2, 2, bytes(4), max_pixels=4).pixels.shape == (2, 2, 3)


@pytest.mark.parametrize('data, message', [
    ([1, 2, 3, 4], 'data must be a bytes-like buffer, got list'),
    ('abcd', 'got str'),
    (None, 'data must be a C-contiguous bytes-like buffer, got NoneType'),
    (np.zeros((2, 4), np.uint8)[:, ::2], 'C-contiguous bytes-like buffer, got ndarray'),
])
def test_bad_data_types(data, message):
    """Data that is not a contiguous byte buffer is refused."""
    with pytest.raises(ImageFormatError) as caught:
        decode_image('mono8', 2, 2, 2, data)
    assert message in str(caught.value)


def test_to_order_rejects_unknown_order():
    """to_order only knows 'rgb' and 'bgr'."""
    with pytest.raises(ValueError, match="order must be 'rgb' or 'bgr', got 'hsv'"):
        decode_image('mono8', 1, 1, 1, b'\0').to_order('hsv')


@pytest.mark.parametrize('fmt', ['png', 'rgb8; png compressed bgr8', ''])
def test_compressed_png_round_trip(fmt):
    """A PNG decodes to the exact BGR pixels it was made from."""
    bgr = RNG.integers(0, 256, (5, 7, 3), np.uint8)
    payload = cv2.imencode('.png', bgr)[1]
    decoded = decode_compressed(fmt, array.array('B', payload.tobytes()))
    assert decoded.order == 'bgr' and not decoded.pixels.flags.writeable
    np.testing.assert_array_equal(decoded.pixels, bgr)


@pytest.mark.parametrize('fmt', ['jpeg', 'rgb8; jpeg compressed bgr8'])
def test_compressed_jpeg(fmt):
    """A JPEG of a solid colour decodes to that colour, BGR ordered."""
    bgr = np.full((16, 16, 3), SOLID_RGB[::-1], np.uint8)
    decoded = decode_compressed(fmt, cv2.imencode('.jpg', bgr)[1].tobytes())
    np.testing.assert_allclose(decoded.to_order('rgb')[8, 8], SOLID_RGB, atol=3)


def test_compressed_grey_and_16bit_png_become_8bit_bgr():
    """Grey and 16-bit PNGs are expanded/reduced to 8-bit three-channel images."""
    grey = cv2.imencode('.png', np.full((3, 3), 77, np.uint8))[1].tobytes()
    np.testing.assert_array_equal(decode_compressed('png', grey).pixels, np.full((3, 3, 3), 77))
    deep = cv2.imencode('.png', np.full((3, 3), 0x4D00, np.uint16))[1].tobytes()
    np.testing.assert_array_equal(decode_compressed('png', deep).pixels, np.full((3, 3, 3), 77))


@pytest.mark.parametrize('fmt, data, message', [
    ('jpeg', b'', "compressed image ('jpeg') has an empty payload"),
    ('jpeg', b'not an image at all', "cannot decode 19-byte 'jpeg' payload"),
    ('png', b'\x89PNG\r\n\x1a\n\0\0', "cannot decode 10-byte 'png' payload"),
    ('16UC1; compressedDepth png', b'\0' * 20, 'is a compressedDepth depth map'),
    (b'png', b'\0', 'format must be a str, got bytes'),
    ('png', [1, 2], 'data must be a bytes-like buffer, got list'),
])
def test_compressed_refusals(fmt, data, message):
    """Empty, corrupt and depth payloads raise ImageFormatError."""
    with pytest.raises(ImageFormatError) as caught:
        decode_compressed(fmt, data)
    assert message in str(caught.value)


def test_compressed_max_pixels():
    """max_pixels also bounds compressed images."""
    payload = cv2.imencode('.png', np.zeros((4, 5, 3), np.uint8))[1].tobytes()
    with pytest.raises(ImageFormatError, match='PNG header declares 20 pixels'):
        decode_compressed('png', payload, max_pixels=19)


def test_encode_mono8_round_trip():
    """encode_mono8 packs rows tightly into an array.array, also from a strided view."""
    labels = RNG.integers(0, 20, (6, 10), np.uint8)[:, ::2]
    encoding, step, data = encode_mono8(labels)
    assert (encoding, step, type(data)) == ('mono8', 5, array.array) and data.typecode == 'B'
    decoded = decode_image(encoding, 6, 5, step, data)
    np.testing.assert_array_equal(decoded.pixels[..., 0], labels)


def test_encode_rgb8_round_trip():
    """encode_rgb8 output decodes back to the same RGB image."""
    image = RNG.integers(0, 256, (4, 6, 3), np.uint8)
    encoded = encode_rgb8(image)
    assert (encoded.encoding, encoded.step, len(encoded.data)) == ('rgb8', 18, 72)
    decoded = decode_image(encoded.encoding, 4, 6, encoded.step, encoded.data)
    np.testing.assert_array_equal(decoded.to_order('rgb'), image)


@pytest.mark.parametrize('function, array_in', [
    (encode_mono8, np.zeros((2, 2, 1), np.uint8)), (encode_mono8, np.zeros((2, 2), np.int32)),
    (encode_rgb8, np.zeros((2, 2, 4), np.uint8)), (encode_rgb8, np.zeros((2, 2, 3), float))])
def test_encode_rejects_wrong_arrays(function, array_in):
    """Encoders check shape and dtype."""
    with pytest.raises(ValueError, match='must be H x W'):
        function(array_in)


def test_modules_import_no_ros():
    """The codec and renderer stay usable without any ROS package."""
    code = ('import sys, espnet_ros.imaging.codec, espnet_ros.imaging.render; '
            "ros = [m for m in sys.modules if m.split('.')[0] in "
            "('rclpy', 'sensor_msgs', 'std_msgs', 'cv_bridge')]; assert not ros, ros")
    subprocess.run([sys.executable, '-c', code], check=True)


# Bytes per pixel in a row, rows of step bytes per image row, (width, height) divisors.
LAYOUT = {name: (1, 1, (1, 1)) for name in SUPPORTED_ENCODINGS}
LAYOUT.update({name: (3, 1, (1, 1)) for name in ('rgb8', 'bgr8', '8UC3')})
LAYOUT.update({name: (4, 1, (1, 1)) for name in ('rgba8', 'bgra8', '8UC4')})
LAYOUT.update({name: (6, 1, (1, 1)) for name in ('rgb16', 'bgr16', '16UC3')})
LAYOUT.update({name: (8, 1, (1, 1)) for name in ('rgba16', 'bgra16', '16UC4')})
LAYOUT.update({name: (2, 1, (1, 1)) for name in SUPPORTED_ENCODINGS if name.endswith('16')
               and name.startswith(('mono', 'bayer'))})
LAYOUT.update({'16UC1': (2, 1, (1, 1)), 'nv12': (1, 1.5, (2, 2)), 'nv21': (1, 1.5, (2, 2))})
LAYOUT.update({name: (2, 1, (2, 1)) for name in ('uyvy', 'yuv422', 'yuyv', 'yuv422_yuy2')})


@st.composite
def messages(draw):
    """Image fields that are well formed half of the time and have one broken field else."""
    fault = draw(st.sampled_from(['none'] * 5 + ['encoding', 'height', 'width', 'step', 'size']))
    encoding = draw(st.sampled_from(SUPPORTED_ENCODINGS))
    if fault == 'encoding':
        encoding = draw(st.sampled_from(['32FC1', '8UC2', 'nv24', 'MONO8']) | st.text(max_size=8))
    pixel_bytes, rows, (width_div, height_div) = LAYOUT.get(encoding, (1, 1, (1, 1)))
    height = height_div * draw(st.integers(1, 5))
    width = width_div * draw(st.integers(1, 5))
    if fault == 'height':
        height = draw(st.integers(-2, 9) | st.integers(2 ** 32 - 2, 2 ** 33))
    if fault == 'width':
        width = draw(st.integers(-2, 9) | st.integers(2 ** 32 - 2, 2 ** 33))
    step = max(width, 0) * pixel_bytes + draw(st.integers(0, 4))
    if fault == 'step':
        step += draw(st.integers(-4, 4) | st.integers(-2 ** 33, 2 ** 33))
    size = int(step * max(height, 0) * rows)
    if fault == 'size':
        size += draw(st.integers(-3, 3))
    if not 0 <= size <= 4096:
        size = draw(st.integers(0, 64))
    container = draw(st.sampled_from(CONTAINERS))
    return encoding, height, width, step, container(bytes(size)), draw(st.booleans())


@settings(max_examples=200, deadline=None)
@given(messages())
def test_random_messages_decode_or_raise_image_format_error(message):
    """No field combination crashes with anything but ImageFormatError; valid ones decode."""
    encoding, height, width, step, data, bigendian = message
    pixel_bytes, rows, (width_div, height_div) = LAYOUT.get(encoding, (0, 0, (1, 1)))
    valid = (encoding in SUPPORTED_ENCODINGS and 0 < height < 2 ** 32 and 0 < width < 2 ** 32
             and width * pixel_bytes <= step < 2 ** 32 and width % width_div == 0
             and height % height_div == 0 and len(bytes(data)) == step * height * rows)
    try:
        decoded = decode_image(encoding, height, width, step, data, is_bigendian=bigendian)
    except ImageFormatError:
        assert not valid
        return
    assert valid
    assert decoded.pixels.shape == (height, width, 3) and decoded.pixels.dtype == np.uint8
    assert decoded.order in ('rgb', 'bgr') and not decoded.pixels.flags.writeable


def test_encode_32fc1_round_trips_little_endian() -> None:
    values = RNG.random((3, 5)).astype(np.float64)
    encoded = encode_32fc1(values)
    assert encoded.encoding == '32FC1' and encoded.step == 5 * 4
    decoded = np.frombuffer(encoded.data, '<f4').reshape(3, 5)
    assert np.allclose(decoded, values, atol=1e-7)
    with pytest.raises(ValueError, match='H x W float'):
        encode_32fc1(np.zeros((2, 2), np.uint8))
