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
The labelled cloud through the node over real DDS, read back as its consumers read it.

The camera plays the Cityscapes street scene; the depth camera, registered to it, sees a
known world (flat ground 1.5 m below the optical axis, a facade at 8 m, a patch beyond
max_depth and a hole of zero depth). Every valid point must sit where back-projection puts
it, to 1 mm, and carry its pixel's label. A second test consumes the outputs the way Nav2's
semantic segmentation layer does: an exact-time synchroniser over labels, mono8 confidence
and cloud, points walked in pixel order beside ``labels.data[v * width + u]``, mapped to
ground tiles. The bad inputs of the issue get a reason in the diagnostics while the labels
keep coming.
"""

from collections import Counter
from pathlib import Path
import re
import time
from typing import Any, Callable, Iterator, Optional

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from message_filters import Subscriber, TimeSynchronizer
import numpy as np
import pytest
from ros_helpers import (camera_image, depth_segmenter, diagnostic_values, header_at,
                         input_publishers, NodeProcess, Probe, RECORD_QOS,
                         send_until_answered, stamp_ns)
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from sensor_msgs_py.point_cloud2 import read_points, read_points_numpy
from std_msgs.msg import Header

from espnet_ros.imaging.files import camera_rgb
from espnet_ros.tools.depth_scenes import flat_world, ground_tile, pinhole_k
from espnet_ros.zoo.registry import get_spec

MODEL = 'espnet_p2q8_cityscapes'
NAMESPACE = '/depth'  # of this module's node alone
NODE = f'{NAMESPACE}/segmenter'
OUT = f'{NAMESPACE}/segmentation'  # the node's outputs
DEPTH_REJECTED = 'depth frames rejected'  # a diagnostics key of a node with depth
FRAME_ID = 'front_camera_optical'
CAMERA_SIZE = (320, 160)
CAMERA_HEIGHT_M, FACADE_M, FAR_M = 1.5, 8.0, 12.0
MAX_DEPTH_M = 10.0
HOLE = (slice(120, 135), slice(40, 70))      # rows, columns of zero depth
FAR_PATCH = (slice(20, 40), slice(250, 300))  # facade pushed beyond max_depth
TILE_M = 0.5
GROUND_TOLERANCE_M = 0.05
MIN_TILE_PIXELS = 5  # tiles this well seen have a clear majority class
MM = 1e-3
# Waits, not figures: safety nets for a heavily loaded machine.
DIAGNOSTICS_TIMEOUT_S, SYNC_TIMEOUT_S, OUTPUTS_TIMEOUT_S = 60.0, 300.0, 300.0
NODE_PARAMETERS = {'model': MODEL, 'input_width': 512, 'input_height': 256, 'device': 'cpu',
                   'precision': 'fp32', 'publish_points': True, 'publish_confidence': True,
                   'confidence_encoding': 'mono8', 'max_depth': MAX_DEPTH_M,
                   'publish_color': False, 'publish_overlay': False}
TOPICS = {'image': '/front/color/image_raw', 'camera_info': '/front/color/camera_info',
          'depth/image': '/front/aligned_depth/image_raw',
          'depth/camera_info': '/front/aligned_depth/camera_info'}
K = pinhole_k(CAMERA_SIZE, horizontal_fov_deg=90.0)
REJECTION_TRIES = 5  # frames sent at most until one with depth is paired and rejected


def send_frames(*args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """Send frames until outputs come (ros_helpers.send_until_answered), waiting long."""
    return send_until_answered(*args, timeout_s=OUTPUTS_TIMEOUT_S, **kwargs)


def scene_metres() -> np.ndarray:
    """Return the depth the registered depth camera sees, in metres (0 = no measurement)."""
    metres = flat_world(CAMERA_SIZE, K, CAMERA_HEIGHT_M, FACADE_M)
    metres[FAR_PATCH] = FAR_M
    metres[HOLE] = 0.0
    return metres


def depth_16uc1(metres: np.ndarray, header: Any, frame_id: str = FRAME_ID) -> Image:
    millimetres = np.rint(metres / MM).astype('<u2')
    own_header = Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec),
                        frame_id=frame_id)  # a copy: the colour frame keeps its own
    message = Image(header=own_header, height=metres.shape[0], width=metres.shape[1],
                    encoding='16UC1', is_bigendian=False, step=metres.shape[1] * 2)
    message.data = millimetres.tobytes()
    return message


def depth_info(header: Any) -> CameraInfo:
    return CameraInfo(header=header, width=CAMERA_SIZE[0], height=CAMERA_SIZE[1],
                      k=K.reshape(-1).tolist())


@pytest.fixture(scope='module')
def street_rgb(street_bgr: np.ndarray) -> np.ndarray:
    return camera_rgb(street_bgr, CAMERA_SIZE)


@pytest.fixture(scope='module')
def segmenter(probe: Probe, weights_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with depth_segmenter(probe, NODE_PARAMETERS, TOPICS, weights_dir=weights_dir,
                         namespace=NAMESPACE, log_dir=tmp_path_factory.mktemp('points')) as node:
        yield node


@pytest.fixture(scope='module')
def publishers(probe: Probe) -> dict[str, Any]:
    return input_publishers(probe, TOPICS)


def sender(publishers: dict[str, Any], rgb: np.ndarray, *, depth: Callable[[Any], Any],
           info: bool = True) -> Callable[[int], None]:
    """Return publish(stamp): depth, its CameraInfo, then the colour frame, one stamp."""
    def publish(stamp: int) -> None:
        header = header_at(stamp, FRAME_ID)
        message = depth(header)
        if message is not None:
            publishers['depth/image'].publish(message)
        if info:
            publishers['depth/camera_info'].publish(depth_info(header))
        publishers['image'].publish(camera_image(rgb, 'rgb8', header))
    return publish


def expected_points(metres: np.ndarray) -> np.ndarray:
    """Back-project the millimetre-quantised depth, pixel by pixel: H x W x 3, NaN if invalid."""
    z = np.rint(metres / MM) * MM
    v, u = np.mgrid[0:z.shape[0], 0:z.shape[1]]
    points = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], axis=-1)
    points[(z <= 0) | (z > MAX_DEPTH_M)] = np.nan
    return points


def test_no_depth_camera_info_yet_names_the_topic(
        probe: Probe, segmenter: NodeProcess, publishers: dict[str, Any],
        street_rgb: np.ndarray) -> None:
    """First in the module: the node has never had a depth CameraInfo."""
    points = probe.record(PointCloud2, f'{OUT}/points')
    labels = {'labels': probe.record(Image, f'{OUT}/labels')}
    metres = scene_metres()
    send = sender(publishers, street_rgb, depth=lambda header: depth_16uc1(metres, header),
                  info=False)
    stamp, _ = send_frames(probe, send, labels)
    after = diagnostics_once(probe)
    for _ in range(REJECTION_TRIES):
        # On a busy machine a frame's depth may come after the frame was processed (then it
        # counts as unpaired): another frame, until one was paired and rejected.
        if int(after[DEPTH_REJECTED]) >= 1:
            break
        stamp, _ = send_frames(probe, send, labels)
        after = diagnostics_once(probe)
    probe.spin_for(1.0)
    probe.forget([points, *labels.values()])
    assert not points.with_stamp(stamp)
    assert int(after[DEPTH_REJECTED]) >= 1, after
    assert (f'no depth CameraInfo received on {TOPICS["depth/camera_info"]}'
            in after['last depth problem']), after


def test_cloud_sits_where_back_projection_puts_it(probe: Probe, segmenter: NodeProcess,
                                                  publishers: dict[str, Any],
                                                  street_rgb: np.ndarray) -> None:
    metres = scene_metres()
    recorders = {'labels': probe.record(Image, f'{OUT}/labels'),
                 'confidence': probe.record(Image, f'{OUT}/confidence'),
                 'points': probe.record(PointCloud2, f'{OUT}/points')}
    stamp, out = send_frames(probe, sender(
        publishers, street_rgb, depth=lambda header: depth_16uc1(metres, header)), recorders)
    probe.forget(recorders.values())
    cloud, labels, confidence = out['points'], out['labels'], out['confidence']
    assert stamp_ns(cloud.header) == stamp_ns(labels.header) == stamp
    assert cloud.header.frame_id == FRAME_ID
    assert (cloud.height, cloud.width) == (labels.height, labels.width) == CAMERA_SIZE[::-1]
    assert [field.name for field in cloud.fields] == ['x', 'y', 'z', 'rgb', 'label',
                                                      'confidence']
    assert not cloud.is_dense
    xyz = read_points_numpy(cloud, field_names=['x', 'y', 'z']).reshape(
        cloud.height, cloud.width, 3)
    expected = expected_points(metres)
    valid = np.isfinite(expected[..., 2])
    assert np.isnan(xyz[~valid]).all()
    assert np.isfinite(xyz[valid]).all()
    assert np.abs(xyz[valid] - expected[valid]).max() < MM
    assert (~valid[HOLE]).all() and (~valid[FAR_PATCH]).all()
    fields = read_points(cloud, field_names=['label', 'confidence'])
    label_image = np.frombuffer(labels.data, np.uint8).reshape(labels.height, labels.width)
    np.testing.assert_array_equal(fields['label'].reshape(label_image.shape), label_image)
    assert confidence.encoding == 'mono8' and confidence.step == confidence.width
    as_byte = np.frombuffer(confidence.data, np.uint8).astype(np.float32)
    assert np.abs(fields['confidence'] * 255 - as_byte).max() <= 0.5 + 1e-3


def test_consumed_like_the_nav2_semantic_layer(probe: Probe, segmenter: NodeProcess,
                                               publishers: dict[str, Any],
                                               street_rgb: np.ndarray) -> None:
    """Exact-time sync of labels, mono8 confidence and cloud; points to ground tiles."""
    subscribers = [Subscriber(probe.node, Image, f'{OUT}/labels', qos_profile=RECORD_QOS),
                   Subscriber(probe.node, Image, f'{OUT}/confidence',
                              qos_profile=RECORD_QOS),
                   Subscriber(probe.node, PointCloud2, f'{OUT}/points',
                              qos_profile=RECORD_QOS)]
    synced: list[tuple[Image, Image, PointCloud2]] = []
    TimeSynchronizer(subscribers, 50).registerCallback(lambda *msgs: synced.append(msgs))
    metres = scene_metres()
    publish = sender(publishers, street_rgb, depth=lambda header: depth_16uc1(metres, header))
    deadline = time.monotonic() + SYNC_TIMEOUT_S
    while not synced and time.monotonic() < deadline:
        publish(time.time_ns())
        probe.spin_for(2.0)
    for subscriber in subscribers:
        probe.node.destroy_subscription(subscriber.sub)
    assert synced, 'the exact-time synchroniser never matched labels, confidence and cloud'
    labels, confidence, cloud = synced[0]
    width = labels.width
    assert cloud.width == width and confidence.step == width

    # The layer's loop: the cloud's points in order, pixel index v * width + u beside them.
    points = read_points(cloud, field_names=['x', 'y', 'z'])
    seen: dict[tuple[int, int], Counter] = {}
    for index, point in enumerate(points):
        if not (np.isfinite(point['z']) and point['z'] < FACADE_M
                and abs(point['y'] - CAMERA_HEIGHT_M) < GROUND_TOLERANCE_M):
            continue  # not on the ground
        v, u = divmod(index, width)
        tile = tuple(ground_tile((point['x'], point['z']), TILE_M))
        seen.setdefault(tile, Counter())[labels.data[v * width + u]] += 1
        assert 0 <= confidence.data[v * width + u] <= 255

    # Where the pinhole model puts each ground pixel, independently of the cloud.
    metres_seen = np.rint(metres / MM) * MM
    expected: dict[tuple[int, int], Counter] = {}
    label_image = np.frombuffer(labels.data, np.uint8).reshape(labels.height, width)
    for v in range(int(np.ceil(K[1, 2])), labels.height):
        for u in range(width):
            z = metres_seen[v, u]
            if not 0 < z <= MAX_DEPTH_M or z >= FACADE_M:
                continue
            x = (u - K[0, 2]) * z / K[0, 0]
            tile = tuple(ground_tile((np.float64(x), np.float64(z)), TILE_M))
            expected.setdefault(tile, Counter())[label_image[v, u]] += 1
    assert sum(map(sum, map(Counter.values, seen.values()))) == sum(
        map(sum, map(Counter.values, expected.values())))
    for tile, classes in expected.items():
        if sum(classes.values()) >= MIN_TILE_PIXELS:
            assert seen[tile].most_common(1)[0][0] == classes.most_common(1)[0][0], tile
    road = get_spec(MODEL).dataset.classes.index('road')
    ahead = tuple(ground_tile((np.float64(0.0), np.float64(5.0)), TILE_M))
    assert seen[ahead].most_common(1)[0][0] == road, seen[ahead]


def depth_32fc1(metres: np.ndarray, header: Any) -> Image:
    message = Image(header=header, height=metres.shape[0], width=metres.shape[1],
                    encoding='32FC1', is_bigendian=False, step=metres.shape[1] * 4)
    message.data = metres.astype('<f4').tobytes()
    return message


def test_nan_inf_and_negative_metres_give_nan_points(probe: Probe, segmenter: NodeProcess,
                                                     publishers: dict[str, Any],
                                                     street_rgb: np.ndarray) -> None:
    metres = scene_metres()
    bad = {(100, 10): np.nan, (100, 11): np.inf, (100, 12): -np.inf, (100, 13): -3.0}
    for (v, u), value in bad.items():
        metres[v, u] = value
    before = diagnostics_once(probe)
    recorders = {'labels': probe.record(Image, f'{OUT}/labels'),
                 'points': probe.record(PointCloud2, f'{OUT}/points')}
    _, out = send_frames(probe, sender(
        publishers, street_rgb, depth=lambda header: depth_32fc1(metres, header)), recorders)
    probe.forget(recorders.values())
    xyz = read_points_numpy(out['points'], field_names=['x', 'y', 'z']).reshape(
        CAMERA_SIZE[1], CAMERA_SIZE[0], 3)
    for v, u in bad:
        assert np.isnan(xyz[v, u]).all(), (v, u)
    assert np.isfinite(xyz[100, 20]).all()
    after = diagnostics_once(probe)
    assert int(after['depth frames with negative depths']) > int(
        before['depth frames with negative depths'])


def test_labels_at_the_network_size_take_the_nearest_depth_pixel(
        probe: Probe, segmenter: NodeProcess, publishers: dict[str, Any],
        street_rgb: np.ndarray) -> None:
    """Labels 512x256 over a 320x160 depth image: organized like the labels, exact geometry."""
    assert probe.set_parameters(NODE, {'output_resolution': 'network'})[0].successful
    try:
        metres = scene_metres()
        recorders = {'labels': probe.record(Image, f'{OUT}/labels'),
                     'points': probe.record(PointCloud2, f'{OUT}/points')}
        _, out = send_frames(probe, sender(
            publishers, street_rgb, depth=lambda header: depth_16uc1(metres, header)), recorders)
        probe.forget(recorders.values())
    finally:
        probe.set_parameters(NODE, {'output_resolution': 'input'})
    labels, cloud = out['labels'], out['points']
    assert (cloud.height, cloud.width) == (labels.height, labels.width) == (256, 512)
    rows = np.minimum(((np.arange(256) + 0.5) * 160 / 256).astype(int), 159)
    cols = np.minimum(((np.arange(512) + 0.5) * 320 / 512).astype(int), 319)
    expected = expected_points(metres)[rows[:, None], cols]
    xyz = read_points_numpy(cloud, field_names=['x', 'y', 'z']).reshape(256, 512, 3)
    valid = np.isfinite(expected[..., 2])
    assert np.isnan(xyz[~valid]).all()
    assert np.abs(xyz[valid] - expected[valid]).max() < MM


def diagnostics_once(probe: Probe) -> dict[str, str]:
    """
    Return the node's diagnostics as they stand now, frames sent so far counted.

    The second report heard: the first may have been computed, or in flight, before the
    last frame was processed; the next is a report period later.
    """
    recorder = probe.record(DiagnosticArray, '/diagnostics')
    try:
        def ours() -> Optional[dict[str, str]]:
            reports = [values for _, message in recorder.messages
                       for values in [diagnostic_values(message, NODE)] if values]
            return reports[1] if len(reports) > 1 else None
        return probe.spin_until(ours, DIAGNOSTICS_TIMEOUT_S, 'diagnostics')
    finally:
        probe.forget([recorder])


@pytest.mark.parametrize('case, depth, expected', [
    ('wrong encoding', lambda header: _recoded(depth_16uc1(scene_metres(), header), 'mono16'),
     'depth encoding .mono16. is not supported'),
    ('other frame', lambda header: depth_16uc1(scene_metres(), header, 'depth_optical'),
     'must be registered'),
    ('other aspect', lambda header: depth_16uc1(np.ones((120, 160), np.float32), header),
     'different aspect ratios'),
])
def test_bad_depth_gives_a_reason_and_the_labels_go_on(
        probe: Probe, segmenter: NodeProcess, publishers: dict[str, Any],
        street_rgb: np.ndarray, case: str, depth: Callable, expected: str) -> None:
    before = diagnostics_once(probe)
    points = probe.record(PointCloud2, f'{OUT}/points')
    labels = {'labels': probe.record(Image, f'{OUT}/labels')}
    stamp, _ = send_frames(probe, sender(publishers, street_rgb, depth=depth), labels)
    probe.spin_for(1.0)
    probe.forget([points, *labels.values()])
    assert not points.with_stamp(stamp), f'{case}: a cloud was published'
    after = diagnostics_once(probe)
    assert int(after[DEPTH_REJECTED]) > int(before[DEPTH_REJECTED])
    assert re.search(expected, after['last depth problem']), after


def test_unpaired_frames_are_counted_with_slop_0(probe: Probe, segmenter: NodeProcess,
                                                 publishers: dict[str, Any],
                                                 street_rgb: np.ndarray) -> None:
    assert all(result.successful for result in probe.set_parameters(
        NODE, {'depth_sync_slop': 0.0}))
    try:
        before = diagnostics_once(probe)
        metres = scene_metres()

        def shifted(header: Any) -> Image:
            message = depth_16uc1(metres, header)
            message.header.stamp.nanosec = (message.header.stamp.nanosec + 1000) % 10**9
            return message
        # Clouds are made only for subscribers, so the pairing runs only with one.
        points = probe.record(PointCloud2, f'{OUT}/points')
        labels = {'labels': probe.record(Image, f'{OUT}/labels')}
        stamp, _ = send_frames(probe, sender(publishers, street_rgb, depth=shifted), labels)
        probe.spin_for(1.0)
        probe.forget([points, *labels.values()])
        assert not points.with_stamp(stamp)
        after = diagnostics_once(probe)
        assert int(after['frames unpaired (no depth within depth_sync_slop)']) > int(
            before['frames unpaired (no depth within depth_sync_slop)'])
        assert 'no depth image within depth_sync_slop (0.0 s)' in after['last depth problem']
    finally:
        probe.set_parameters(NODE, {'depth_sync_slop': NODE_PARAMETERS.get(
            'depth_sync_slop', 0.02)})


def test_min_depth_above_max_depth_is_refused(probe: Probe, segmenter: NodeProcess) -> None:
    (result,) = probe.set_parameters(NODE, {'min_depth': 20.0})
    assert not result.successful and 'must be below max_depth' in result.reason


def _recoded(message: Image, encoding: str) -> Image:
    message.encoding = encoding
    return message


# Pairing by stamp, whichever comes second (issue 25) ---------------------------------------

DEPTH_DELAYS_S = (0.03, 0.06, 0.1)
FRAMES_PER_CASE = 3
DEPTH_PERIOD_S = 0.005  # a 200 Hz depth camera
LONG_WAIT_S = 10.0      # depth_sync_wait for a busy machine: the test is about pairing, not time


@pytest.fixture
def long_wait(probe: Probe, segmenter: NodeProcess) -> Iterator[None]:
    assert probe.set_parameters(NODE, {'depth_sync_wait': LONG_WAIT_S})[0].successful
    try:
        yield
    finally:
        probe.set_parameters(NODE, {'depth_sync_wait': 0.25})


def warm_up(probe: Probe, publishers: dict[str, Any], rgb: np.ndarray) -> None:
    """Send frames until one has its cloud: the node has seen the points subscriber."""
    metres = scene_metres()
    recorders = {'points': probe.record(PointCloud2, f'{OUT}/points')}
    send_frames(probe, sender(publishers, rgb, depth=lambda header: depth_16uc1(metres, header)),
                recorders)
    probe.forget(recorders.values())


def colour_then(probe: Probe, publishers: dict[str, Any], rgb: np.ndarray,
                labels: Any, points: Any, send_depth: Callable[[int], None]) -> int:
    """Publish a colour frame, call ``send_depth(stamp)``, wait for its cloud; return stamp."""
    stamp = time.time_ns()
    header = header_at(stamp, FRAME_ID)
    publishers['depth/camera_info'].publish(depth_info(header))
    publishers['image'].publish(camera_image(rgb, 'rgb8', header))
    send_depth(stamp)
    probe.spin_until(lambda: labels.with_stamp(stamp) and points.with_stamp(stamp),
                     OUTPUTS_TIMEOUT_S, f'labels and cloud of the frame stamped {stamp}')
    return stamp


def test_depth_after_the_colour_frame_gives_every_cloud(
        probe: Probe, segmenter: NodeProcess, publishers: dict[str, Any],
        street_rgb: np.ndarray, long_wait: None) -> None:
    """Depth 30-100 ms after colour, and depth sent only once the labels came back."""
    warm_up(probe, publishers, street_rgb)
    metres = scene_metres()
    labels = probe.record(Image, f'{OUT}/labels')
    points = probe.record(PointCloud2, f'{OUT}/points')
    before = diagnostics_once(probe)

    def later(delay_s: float) -> Callable[[int], None]:
        def send(stamp: int) -> None:
            probe.spin_for(delay_s)
            publishers['depth/image'].publish(depth_16uc1(metres, header_at(stamp, FRAME_ID)))
        return send

    def after_labels(stamp: int) -> None:
        probe.spin_until(lambda: labels.with_stamp(stamp), OUTPUTS_TIMEOUT_S, 'labels')
        publishers['depth/image'].publish(depth_16uc1(metres, header_at(stamp, FRAME_ID)))

    cases = [later(delay) for delay in DEPTH_DELAYS_S] + [after_labels] * FRAMES_PER_CASE
    stamps = [colour_then(probe, publishers, street_rgb, labels, points, send)
              for send in cases]
    probe.forget([labels, points])
    assert all(len(points.with_stamp(stamp)) == 1 for stamp in stamps)
    after = diagnostics_once(probe)
    unpaired = 'frames unpaired (no depth within depth_sync_slop)'
    assert int(after[unpaired]) == int(before[unpaired]), after


def test_depth_at_200_hz_gives_every_cloud(probe: Probe, segmenter: NodeProcess,
                                           publishers: dict[str, Any],
                                           street_rgb: np.ndarray) -> None:
    """Colour, then depth at 200 Hz from 50 ms before its stamp to 300 ms after it."""
    warm_up(probe, publishers, street_rgb)
    metres = scene_metres()
    labels = probe.record(Image, f'{OUT}/labels')
    points = probe.record(PointCloud2, f'{OUT}/points')

    def stream(stamp: int) -> None:
        for offset_ms in range(-50, 300, round(DEPTH_PERIOD_S * 1000)):
            header = header_at(stamp + offset_ms * 1_000_000, FRAME_ID)
            publishers['depth/image'].publish(depth_16uc1(metres, header))
            probe.spin_for(DEPTH_PERIOD_S)

    stamps = [colour_then(probe, publishers, street_rgb, labels, points, stream)
              for _ in range(FRAMES_PER_CASE)]
    probe.forget([labels, points])
    assert all(len(points.with_stamp(stamp)) == 1 for stamp in stamps)


def test_a_depth_stamped_ahead_or_invalid_breaks_nothing(
        probe: Probe, segmenter: NodeProcess, publishers: dict[str, Any],
        street_rgb: np.ndarray) -> None:
    warm_up(probe, publishers, street_rgb)
    metres = scene_metres()
    before = diagnostics_once(probe)
    ahead = depth_16uc1(metres, header_at(time.time_ns() + 800_000_000, FRAME_ID))
    invalid_nanosec = depth_16uc1(metres, header_at(time.time_ns(), FRAME_ID))
    invalid_nanosec.header.stamp.nanosec = 2_000_000_000
    negative = depth_16uc1(metres, header_at(time.time_ns(), FRAME_ID))
    negative.header.stamp.sec = -5
    for message in (ahead, invalid_nanosec, negative):
        publishers['depth/image'].publish(message)
        probe.spin_for(0.05)
    labels = probe.record(Image, f'{OUT}/labels')
    points = probe.record(PointCloud2, f'{OUT}/points')

    def depth_5_ms_later(stamp: int) -> None:
        publishers['depth/image'].publish(depth_16uc1(metres, header_at(stamp + 5_000_000,
                                                                        FRAME_ID)))

    stamps = [colour_then(probe, publishers, street_rgb, labels, points, depth_5_ms_later)
              for _ in range(FRAMES_PER_CASE)]
    probe.forget([labels, points])
    assert all(len(points.with_stamp(stamp)) == 1 for stamp in stamps)
    after = diagnostics_once(probe)
    assert int(after[DEPTH_REJECTED]) >= int(before[DEPTH_REJECTED]) + 2
    assert re.search(r'sec=-5 nanosec=\d+ is invalid', after['last depth problem']), after
    assert 'failed and was skipped' not in segmenter.log()


def test_big_depth_is_refused_with_a_reason(probe: Probe, segmenter: NodeProcess,
                                            publishers: dict[str, Any],
                                            street_rgb: np.ndarray) -> None:
    """A depth image beyond max_input_pixels is never kept (4096x2048 took 600 MB)."""
    limit = 4 * CAMERA_SIZE[0] * CAMERA_SIZE[1]
    assert probe.set_parameters(NODE, {'max_input_pixels': limit})[0].successful
    try:
        big = np.full((512, 1024), 5.0, np.float32)
        before = diagnostics_once(probe)
        points = probe.record(PointCloud2, f'{OUT}/points')
        labels = {'labels': probe.record(Image, f'{OUT}/labels')}
        stamp, _ = send_frames(probe, sender(
            publishers, street_rgb, depth=lambda header: depth_16uc1(big, header)), labels)
        probe.spin_for(1.0)
        probe.forget([points, *labels.values()])
        assert not points.with_stamp(stamp)
        after = diagnostics_once(probe)
    finally:
        probe.set_parameters(NODE, {'max_input_pixels': 16777216})
    assert int(after[DEPTH_REJECTED]) > int(before[DEPTH_REJECTED])
    # The refused depth leaves its frame unpaired, which the last problem then says.
    assert (f'depth image 1024x512 refused: 524288 pixels is more than max_input_pixels '
            f'({limit})') in segmenter.log()


def test_tiny_focal_length_is_refused_with_a_reason(probe: Probe, segmenter: NodeProcess,
                                                    publishers: dict[str, Any],
                                                    street_rgb: np.ndarray) -> None:
    """A K of fx = fy = 1e-300 passed 'finite, > 0' and gave 51,199 infinite points."""
    metres = scene_metres()
    before = diagnostics_once(probe)
    points = probe.record(PointCloud2, f'{OUT}/points')
    labels = {'labels': probe.record(Image, f'{OUT}/labels')}

    def publish(stamp: int) -> None:
        header = header_at(stamp, FRAME_ID)
        info = depth_info(header)
        info.k[0] = info.k[4] = 1e-300
        publishers['depth/camera_info'].publish(info)
        publishers['depth/image'].publish(depth_16uc1(metres, header))
        publishers['image'].publish(camera_image(street_rgb, 'rgb8', header))
    stamp, _ = send_frames(probe, publish, labels)
    probe.spin_for(1.0)
    probe.forget([points, *labels.values()])
    assert not points.with_stamp(stamp)
    after = diagnostics_once(probe)
    assert int(after[DEPTH_REJECTED]) > int(before[DEPTH_REJECTED])
    assert re.search(r'fx=1e-300 pixels .*not a calibration', after['last depth problem']), after
