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
Depth decoding and the labelled cloud, without ROS: scenes of known geometry to 1 mm.

The cloud maker's refusals and counts, and what the diagnostics make of them, close the file.

The scenes (a plane, a step, a hole of zero depth) are written as 16UC1 millimetres or 32FC1
metres with a known camera matrix; every valid point must sit where the pinhole model puts
it, carry its pixel's label, and be NaN where the depth is invalid.
"""

import array
import functools
from types import SimpleNamespace

from hypothesis import given, strategies as st
import numpy as np
import pytest

from espnet_ros.imaging.cloud import build_cloud, cloud_dtype, nearest_indices, pack_rgb
from espnet_ros.imaging.codec import encode_confidence
from espnet_ros.imaging.depth import (decode_depth, depth_intrinsics, DepthError,
                                      registration_error)
from espnet_ros.imaging.pipeline import FrameOutputs
from espnet_ros.streaming.clouds import CloudMaker, CloudSettings, CloudStats, label_colours
from espnet_ros.streaming.diagnostics import Level, summarize
from espnet_ros.streaming.worker import WorkerStats

MM = 1e-3
WIDTH, HEIGHT = 64, 48
K = np.array([[50.0, 0.0, 31.5], [0.0, 55.0, 23.5], [0.0, 0.0, 1.0]])
PALETTE = [(128, 64, 128), (244, 35, 232), (220, 20, 60)]
LABEL_RGB = pack_rgb(PALETTE)


def step_scene(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Return metres: a plane at 2 m on the left, a step to 3.5 m on the right, a 0 hole."""
    depth = np.full((height, width), 2.0, np.float32)
    depth[:, width // 2:] = 3.5
    depth[height // 4:height // 2, width // 4:width // 2] = 0.0
    return depth


def column_labels(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Return labels that vary along both axes, so a transposed or shifted cloud shows."""
    v, u = np.mgrid[0:height, 0:width]
    return ((u // 8 + v // 12) % len(PALETTE)).astype(np.uint8)


def expected_xyz(depth: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Back-project every pixel in float64, one by one: the reference for the vectorised code."""
    height, width = depth.shape
    out = np.full((height, width, 3), np.nan)
    for v in range(height):
        for u in range(width):
            z = float(depth[v, u])
            if np.isfinite(z) and z > 0:
                out[v, u] = ((u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z)
    return out


def xyz(points: np.ndarray) -> np.ndarray:
    return np.stack([points['x'], points['y'], points['z']], axis=-1).astype(np.float64)


def as_16uc1(metres: np.ndarray, padding: int = 0, big_endian: bool = False) -> tuple:
    millimetres = np.rint(np.nan_to_num(metres) / MM).astype('>u2' if big_endian else '<u2')
    padded = np.zeros((metres.shape[0], metres.shape[1] + padding), millimetres.dtype)
    padded[:, :metres.shape[1]] = millimetres
    return padded.strides[0], array.array('B', padded.tobytes())


def test_step_scene_in_millimetres_back_projects_to_1_mm() -> None:
    metres = step_scene()
    step, data = as_16uc1(metres)
    depth = decode_depth('16UC1', HEIGHT, WIDTH, step, data)
    labels = column_labels()
    cloud = build_cloud(labels, depth.metres, K, label_rgb=LABEL_RGB)
    points = cloud.points()
    assert (cloud.height, cloud.width) == (HEIGHT, WIDTH)
    reference = expected_xyz(metres, K)
    valid = np.isfinite(reference[..., 2])
    assert np.abs(xyz(points)[valid] - reference[valid]).max() < 1 * MM
    assert np.isnan(xyz(points)[~valid]).all()
    assert (~valid).sum() == (HEIGHT // 4) * (WIDTH // 4)  # exactly the hole
    assert cloud.valid == valid.sum() and not cloud.is_dense
    np.testing.assert_array_equal(points['label'], labels)
    np.testing.assert_array_equal(points['rgb'].view('<u4'),
                                  LABEL_RGB.view('<u4')[labels])


def test_a_plane_seen_square_on_has_one_depth_and_spans_the_view() -> None:
    metres = np.full((HEIGHT, WIDTH), 1.25, np.float32)
    cloud = build_cloud(np.zeros((HEIGHT, WIDTH), np.uint8), metres, K, label_rgb=LABEL_RGB)
    points = cloud.points()
    assert cloud.is_dense
    np.testing.assert_allclose(points['z'], 1.25)
    # The left and right edges of the view, from the pinhole model.
    np.testing.assert_allclose(points['x'][:, 0], (0 - 31.5) * 1.25 / 50.0, atol=MM)
    np.testing.assert_allclose(points['x'][:, -1], (WIDTH - 1 - 31.5) * 1.25 / 50.0, atol=MM)
    np.testing.assert_allclose(points['y'][0, :], (0 - 23.5) * 1.25 / 55.0, atol=MM)


def test_rows_are_row_major_pixel_order_in_the_buffer() -> None:
    metres = step_scene()
    labels = column_labels()
    cloud = build_cloud(labels, metres, K, label_rgb=LABEL_RGB)
    flat = np.frombuffer(cloud.data, dtype=cloud.dtype)
    assert len(cloud.data) == cloud.row_step * cloud.height
    for v, u in [(0, 0), (0, WIDTH - 1), (7, 13), (HEIGHT - 1, 5)]:
        assert flat[v * WIDTH + u]['label'] == labels[v, u]
        assert flat[v * WIDTH + u]['x'] == pytest.approx((u - 31.5) * metres[v, u] / 50.0,
                                                         abs=MM)


def test_fields_are_packed_little_endian_in_pcl_order() -> None:
    assert cloud_dtype(False).names == ('x', 'y', 'z', 'rgb', 'label')
    with_confidence = cloud_dtype(True)
    assert with_confidence.names[-1] == 'confidence'
    assert with_confidence.itemsize == 24
    assert [with_confidence.fields[n][1] for n in with_confidence.names] == [
        0, 4, 8, 12, 16, 20]
    red = pack_rgb([(255, 0, 0)]).view('<u4')[0]
    assert red == 0x00FF0000


@pytest.mark.parametrize('bad', [0.0, np.nan, np.inf, -np.inf, -1.0, 0.05, 12.0])
def test_invalid_and_out_of_range_depths_are_nan_points(bad: float) -> None:
    metres = np.full((HEIGHT, WIDTH), 2.0, np.float32)
    metres[10, 20] = bad
    data = array.array('B', metres.astype('<f4').tobytes())
    depth = decode_depth('32FC1', HEIGHT, WIDTH, WIDTH * 4, data)
    assert depth.negative == (1 if bad == -1.0 else 0)
    cloud = build_cloud(np.zeros((HEIGHT, WIDTH), np.uint8), depth.metres, K,
                        label_rgb=LABEL_RGB, min_depth=0.1, max_depth=10.0)
    points = cloud.points()
    assert np.isnan([points['x'][10, 20], points['y'][10, 20], points['z'][10, 20]]).all()
    assert cloud.valid == HEIGHT * WIDTH - 1
    assert points['label'][10, 20] == 0  # the point keeps its place and label


def test_stride_keeps_every_nth_row_and_column_organized() -> None:
    metres = step_scene()
    labels = column_labels()
    confidence = np.random.default_rng(0).random((HEIGHT, WIDTH), dtype=np.float32)
    cloud = build_cloud(labels, metres, K, label_rgb=LABEL_RGB, confidence=confidence,
                        stride=3)
    points = cloud.points()
    assert (cloud.height, cloud.width) == (16, 22)
    np.testing.assert_array_equal(points['label'], labels[::3, ::3])
    np.testing.assert_array_equal(points['confidence'], confidence[::3, ::3])
    reference = expected_xyz(metres, K)[::3, ::3]
    valid = np.isfinite(reference[..., 2])
    assert np.abs(xyz(points)[valid] - reference[valid]).max() < MM


def test_labels_on_a_coarser_grid_take_the_nearest_depth_pixel() -> None:
    """Depth twice the labels' size: each point is the depth pixel nearest its label pixel."""
    metres = step_scene(WIDTH * 2, HEIGHT * 2)
    labels = column_labels()
    cloud = build_cloud(labels, metres, K * [[2], [2], [1]], label_rgb=LABEL_RGB)
    points = cloud.points()
    assert (cloud.height, cloud.width) == labels.shape
    # Pixel u spans [u, u + 1) on the label grid, i.e. [2u, 2u + 2) on the depth grid; its
    # centre 2u + 1 is a depth pixel centre's edge, rounded up: depth pixel 2u + 1.
    k2 = K * [[2], [2], [1]]
    reference = expected_xyz(metres, k2)[1::2, 1::2]
    valid = np.isfinite(reference[..., 2])
    assert np.abs(xyz(points)[valid] - reference[valid]).max() < MM
    np.testing.assert_array_equal(points['label'], labels)


def test_labels_on_a_finer_grid_repeat_depth_pixels_never_interpolate() -> None:
    metres = step_scene(WIDTH // 2, HEIGHT // 2)
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    k_half = K * [[0.5], [0.5], [1]]
    cloud = build_cloud(labels, metres, k_half, label_rgb=LABEL_RGB)
    z = cloud.points()['z']
    assert set(np.unique(z[np.isfinite(z)])) <= {np.float32(2.0), np.float32(3.5)}
    np.testing.assert_array_equal(z[::2, ::2], z[1::2, 1::2])


@given(st.integers(1, 50), st.integers(1, 50), st.integers(1, 4))
def test_nearest_indices_stay_in_range_and_keep_order(count: int, source: int,
                                                      stride: int) -> None:
    picked = nearest_indices(count, source, stride)
    assert len(picked) == -(-count // stride)
    assert picked.min() >= 0 and picked.max() < source
    assert (np.diff(picked) >= 0).all()
    if count == source:
        np.testing.assert_array_equal(picked, np.arange(0, count, stride))


def test_padded_big_endian_millimetres_decode() -> None:
    metres = step_scene()
    step, data = as_16uc1(metres, padding=3, big_endian=True)
    depth = decode_depth('16UC1', HEIGHT, WIDTH, step, data, is_bigendian=True)
    np.testing.assert_allclose(depth.metres, metres, atol=MM / 2)
    assert not depth.metres.flags.writeable


@pytest.mark.parametrize('encoding, height, width, step, size, expected', [
    ('mono16', 4, 4, 8, 32, 'depth encoding .mono16. is not supported; expected 16UC1'),
    ('16UC1', 4, 4, 6, 24, 'step 6 does not hold a row of 4 16UC1 samples'),
    ('32FC1', 4, 4, 18, 72, 'step 18 does not hold a row of 4 32FC1 samples'),
    ('16UC1', 4, 4, 8, 31, 'depth data is 31 bytes, expected step.height = 32'),
    ('16UC1', 0, 4, 8, 0, 'depth image is 4x0'),
    ('32FC1', -1, 4, 16, 16, 'malformed depth image: height -1 is outside the uint32'),
])
def test_malformed_depth_is_refused_with_the_reason(
        encoding: str, height: int, width: int, step: int, size: int, expected: str) -> None:
    with pytest.raises(DepthError, match=expected):
        decode_depth(encoding, height, width, step, bytes(size))


def test_depth_camera_info_for_another_size_is_rescaled_and_uncalibrated_refused() -> None:
    k = depth_intrinsics(K.reshape(-1), (WIDTH, HEIGHT), (WIDTH * 2, HEIGHT * 2))
    np.testing.assert_allclose(k, K * [[2], [2], [1]])
    np.testing.assert_allclose(depth_intrinsics(K.reshape(-1), (0, 0), (10, 10)), K)
    with pytest.raises(DepthError, match='not calibrated'):
        depth_intrinsics([0.0] * 9, (0, 0), (WIDTH, HEIGHT))
    with pytest.raises(DepthError, match='9 finite numbers'):
        depth_intrinsics([np.nan] * 9, (0, 0), (WIDTH, HEIGHT))


def test_registration_needs_the_colour_frame_and_its_aspect_ratio() -> None:
    assert registration_error((640, 480), (640, 480), 'cam', 'cam') is None
    assert registration_error((320, 240), (1280, 960), 'cam', 'cam') is None
    assert registration_error((424, 240), (1280, 720), 'cam', 'cam') is None
    assert 'must be registered' in registration_error((640, 480), (640, 480), 'depth', 'cam')
    assert 'different aspect ratios' in registration_error((640, 480), (1280, 720), 'c', 'c')


def test_bad_build_arguments_are_refused() -> None:
    labels = np.zeros((4, 4), np.uint8)
    depth = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match='min_depth < max_depth'):
        build_cloud(labels, depth, K, label_rgb=LABEL_RGB, min_depth=2.0, max_depth=1.0)
    with pytest.raises(ValueError, match='no colour'):
        build_cloud(labels + 7, depth, K, label_rgb=LABEL_RGB)
    with pytest.raises(DepthError, match='float32 map'):
        build_cloud(labels, depth.astype(np.float64), K, label_rgb=LABEL_RGB)


def test_mono8_confidence_is_0_to_255_with_step_equal_to_width() -> None:
    probability = np.array([[0.0, 0.5, 1.0], [0.25, 0.999, 0.001]], np.float32)
    encoded = encode_confidence(probability, 'mono8')
    assert encoded.encoding == 'mono8' and encoded.step == 3
    assert list(encoded.data) == [0, 128, 255, 64, 255, 0]
    assert encode_confidence(probability, '32FC1').encoding == '32FC1'
    with pytest.raises(ValueError, match='confidence encoding must be one of 32FC1, mono8'):
        encode_confidence(probability, 'mono16')


def _depth_message(metres: np.ndarray, frame_id: str = 'cam', encoding: str = '32FC1'):
    header = SimpleNamespace(frame_id=frame_id, stamp=SimpleNamespace(sec=1, nanosec=5))
    return SimpleNamespace(header=header, encoding=encoding, height=metres.shape[0],
                           width=metres.shape[1], step=metres.shape[1] * 4, is_bigendian=0,
                           data=metres.astype('<f4').tobytes())


def test_cloud_maker_counts_every_frame_without_a_cloud_and_says_why() -> None:
    warnings: list[str] = []
    maker = CloudMaker(warnings.append, info_topic='/cam/depth/camera_info')
    header = SimpleNamespace(frame_id='cam', stamp=SimpleNamespace(sec=1, nanosec=5))
    info = SimpleNamespace(k=K.reshape(-1).tolist(), width=WIDTH, height=HEIGHT)
    outputs = FrameOutputs(column_labels())
    metres = step_scene()
    make = functools.partial(maker.make, header, outputs, (HEIGHT, WIDTH), slop_s=0.0,
                             label_rgb=label_colours(PALETTE), settings=CloudSettings())
    assert make(_depth_message(metres), info) is not None
    assert make(None, info) is None
    assert make(_depth_message(metres), None) is None
    assert make(_depth_message(metres, frame_id='other'), info) is None
    assert make(_depth_message(metres, encoding='mono16'), info) is None
    negative = metres.copy()
    negative[0, 0] = -2.0
    assert make(_depth_message(negative), info) is not None
    stats = maker.snapshot()
    assert (stats.published, stats.unpaired, stats.rejected, stats.negative) == (2, 1, 3, 1)
    assert 'no depth CameraInfo received on /cam/depth/camera_info' in warnings[1]
    assert 'must be registered' in warnings[2] and 'mono16' in warnings[3]
    assert '1 negative depths' in stats.last_problem
    summary = summarize(None, _worker_stats(), previous_clouds=CloudStats(), clouds=stats)
    assert summary.level == Level.WARN and '4 frames without a cloud' in summary.message
    assert ('depth frames rejected', '3') in summary.values
    quiet = summarize(_worker_stats(), _worker_stats(), previous_clouds=stats, clouds=stats)
    assert quiet.level == Level.OK


def _worker_stats() -> WorkerStats:
    return WorkerStats(model='m', device='cpu', precision='fp32', backend='torch',
                       input_size=(64, 48), received=1, processed=1, dropped=0, malformed=0,
                       stamp_backwards=0, failed=0, last_problem='', input_rate_hz=1.0,
                       output_rate_hz=1.0, latency_median_s=0.1, latency_p95_s=0.1,
                       processing_median_s=0.1, implausible_stamps=0)
