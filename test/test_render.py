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

"""Tests for espnet_ros.imaging.render: palette lookup and alpha blending."""

import numpy as np
import pytest

from espnet_ros.imaging.render import colorize, overlay

RNG = np.random.default_rng(3)


def test_colorize_looks_up_palette_and_blacks_out_unknown_labels():
    """Each label takes its palette row; labels past the palette are black."""
    palette = RNG.integers(1, 256, (20, 3), np.uint8)
    labels = RNG.integers(0, 24, (7, 9), np.uint8)
    labels[0, 0] = 255
    expected = np.zeros((256, 3), np.uint8)
    expected[:20] = palette
    out = colorize(labels, palette)
    assert out.shape == (7, 9, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected[labels])
    assert not out[labels >= 20].any()


def test_colorize_strided_labels_and_long_palette():
    """A strided label view works; rows past 256 in the palette are ignored."""
    palette = RNG.integers(0, 256, (300, 3), np.uint8)
    labels = RNG.integers(0, 256, (6, 12), np.uint8)[:, ::3]
    np.testing.assert_array_equal(colorize(labels, palette), palette[labels])


@pytest.mark.parametrize('labels, palette, message', [
    (np.zeros((2, 2), np.int64), np.zeros((3, 3), np.uint8), 'labels must be an H x W uint8'),
    (np.zeros((2, 2, 1), np.uint8), np.zeros((3, 3), np.uint8), 'got shape (2, 2, 1)'),
    (np.zeros((2, 2), np.uint8), np.zeros((3, 4), np.uint8), 'palette must be a K x 3 uint8'),
    (np.zeros((2, 2), np.uint8), np.zeros((3, 3), float), 'dtype float64'),
])
def test_colorize_rejects_wrong_arrays(labels, palette, message):
    """Shapes and dtypes are checked with a message naming the bad argument."""
    with pytest.raises(ValueError) as caught:
        colorize(labels, palette)
    assert message in str(caught.value)


def test_overlay_alpha_ends_and_middle():
    """Alpha 0 gives the image, 1 the colour, 0.5 their rounded mean."""
    image = RNG.integers(0, 256, (5, 6, 3), np.uint8)
    color = RNG.integers(0, 256, (5, 6, 3), np.uint8)
    np.testing.assert_array_equal(overlay(image, color, 0.0), image)
    np.testing.assert_array_equal(overlay(image, color, 1), color)
    mean = (image.astype(int) + color) / 2
    assert np.abs(overlay(image, color, 0.5) - mean).max() <= 0.5


def test_overlay_converts_bgr_image_and_leaves_inputs_alone():
    """A BGR image is swapped to RGB before blending; inputs are not modified."""
    rgb = RNG.integers(0, 256, (4, 3, 3), np.uint8)
    color = RNG.integers(0, 256, (4, 3, 3), np.uint8)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    before = bgr.copy(), color.copy()
    out = overlay(bgr, color, 0.25, image_order='bgr')
    np.testing.assert_array_equal(out, overlay(rgb, color, 0.25))
    np.testing.assert_array_equal(bgr, before[0])
    np.testing.assert_array_equal(color, before[1])


def test_overlay_accepts_read_only_strided_views():
    """Decoded images are read-only, possibly stride-0 views; blending them works."""
    grey = RNG.integers(0, 256, (4, 5), np.uint8)
    image = np.lib.stride_tricks.as_strided(grey, (4, 5, 3), (5, 1, 0), writeable=False)
    out = overlay(image, np.zeros((4, 5, 3), np.uint8), 0.0)
    np.testing.assert_array_equal(out, np.repeat(grey[..., None], 3, axis=2))


@pytest.mark.parametrize('image, color, alpha, order, message', [
    (np.zeros((4, 5, 3), np.uint8), np.zeros((4, 6, 3), np.uint8), 0.5, 'rgb',
     'image is 4x5 but color is 4x6 (H x W); resize one to match'),
    (np.zeros((4, 5), np.uint8), np.zeros((4, 5, 3), np.uint8), 0.5, 'rgb',
     'image must be an H x W x 3 uint8 array, got shape (4, 5)'),
    (np.zeros((4, 5, 3), np.uint8), np.zeros((4, 5, 3), np.float32), 0.5, 'rgb',
     'color must be an H x W x 3 uint8 array'),
    (np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1, 3), np.uint8), -0.1, 'rgb',
     'alpha must be in [0, 1], got -0.1'),
    (np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1, 3), np.uint8), 1.5, 'rgb',
     'alpha must be in [0, 1], got 1.5'),
    (np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1, 3), np.uint8), float('nan'), 'rgb',
     'alpha must be in [0, 1], got nan'),
    (np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1, 3), np.uint8), '0.5', 'rgb',
     'alpha must be a number in [0, 1], got str'),
    (np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1, 3), np.uint8), 0.5, 'RGB',
     "image_order must be 'rgb' or 'bgr', got 'RGB'"),
])
def test_overlay_rejects_bad_arguments(image, color, alpha, order, message):
    """Mismatched sizes, wrong arrays, alpha outside [0, 1] and unknown orders raise."""
    with pytest.raises(ValueError) as caught:
        overlay(image, color, alpha, image_order=order)
    assert message in str(caught.value)
