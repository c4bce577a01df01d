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
Bad camera frames over DDS: each is dropped, counted and reported; the next one is served.

One node (ESPNet p=2 q=3 at 256x128 on the CPU) runs in its own process for the module. Every
test sends it broken frames as a camera would, then a good frame, and checks that the good
frame's labels arrive, that /diagnostics counts the bad ones and that the log says why, once.
"""

import array
from pathlib import Path
import threading
import time
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Optional

import cv2
from diagnostic_msgs.msg import DiagnosticArray
from hypothesis import given, HealthCheck, settings, strategies as st
import numpy as np
import pytest
from rclpy.exceptions import InvalidHandle
from rclpy.qos import qos_profile_sensor_data
from ros_helpers import (camera_image, diagnostic_values, header_at, image_array, NodeProcess,
                         Probe, Recorder, send_until_answered, serving)
from sensor_msgs.msg import CompressedImage, Image

from espnet_ros.ros.segmenter import MAX_WAIT_SET_RACES, serve
from espnet_ros.streaming.problems import ProblemLog

NAMESPACE = '/robust'
NODE = f'{NAMESPACE}/segmenter'
CAMERA_SIZE = (160, 120)   # (width, height)
MAX_PIXELS = 2 * CAMERA_SIZE[0] * CAMERA_SIZE[1]
NODE_PARAMETERS = {'model': 'espnet_p2q3_cityscapes', 'input_width': 256, 'input_height': 128,
                   'device': 'cpu', 'precision': 'fp32', 'publish_color': False,
                   'publish_overlay': False, 'max_input_pixels': MAX_PIXELS}
COUNTERS = {'received': 'frames received', 'processed': 'frames processed',
            'dropped': 'frames dropped (newer frame arrived)', 'malformed': 'frames malformed',
            'backwards': 'frames with stamp going backwards', 'failed': 'frames failed'}
DIAGNOSTICS_TIMEOUT_S = 20.0
WARN_THROTTLE_S = 5.0


@pytest.fixture(scope='module')
def segmenter(probe: Probe, weights_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """Start the node for the module; it must still exit cleanly on Ctrl-C at the end."""
    node = NodeProcess('segmenter', NODE_PARAMETERS, weights_dir=weights_dir,
                       namespace=NAMESPACE, log_dir=tmp_path_factory.mktemp('robust'))
    with serving(probe, node, f'{NAMESPACE}/image'):
        yield node


@pytest.fixture(scope='module')
def camera(probe: Probe, segmenter: NodeProcess) -> Any:
    """Return the camera publisher, matched with the node's subscription."""
    publisher = probe.node.create_publisher(Image, f'{NAMESPACE}/image', qos_profile_sensor_data)
    probe.spin_until(publisher.get_subscription_count, 30.0, 'the camera topic to match')
    return publisher


@pytest.fixture(scope='module')
def labels(probe: Probe, segmenter: NodeProcess) -> Recorder:
    """Return a recorder of the node's labels."""
    return probe.record(Image, f'{NAMESPACE}/segmentation/labels')


@pytest.fixture(scope='module')
def diagnostics(probe: Probe, segmenter: NodeProcess) -> Recorder:
    """Return a recorder of /diagnostics."""
    return probe.record(DiagnosticArray, '/diagnostics')


@pytest.fixture(scope='module')
def scene() -> np.ndarray:
    """Return a camera frame with some structure (RGB, the camera size)."""
    width, height = CAMERA_SIZE
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.dstack([x * 255 // width, y * 255 // height, (x + y) % 256]).astype(np.uint8)
    return cv2.GaussianBlur(rgb, (5, 5), 0)


def raw_image(encoding: str, width: int, height: int, step: int, size: int, *,
              bigendian: int = 0, fill: int = 0x80) -> Image:
    """Return an Image with exactly these fields and ``size`` bytes of data."""
    message = Image(height=height, width=width, encoding=encoding, is_bigendian=bigendian,
                    step=step)
    message.data = array.array('B', bytes([fill]) * size)
    return message


W, H = CAMERA_SIZE
# id: (fields of the broken Image, the counter it lands in, what the warning must say)
BAD_FRAMES = {
    'unknown encoding': (('rgb9', W, H, 3 * W, 3 * W * H), 'unsupported encoding'),
    'float depth map': (('32FC1', W, H, 4 * W, 4 * W * H), 'no defined mapping'),
    'two-channel 8UC2': (('8UC2', W, H, 2 * W, 2 * W * H), 'no agreed colour layout'),
    'empty encoding': (('', W, H, 3 * W, 3 * W * H), 'unsupported encoding'),
    'data shorter than step x height': (('rgb8', W, H, 3 * W, 3 * W * H - 1),
                                        'expected step*height'),
    'data longer than step x height': (('rgb8', W, H, 3 * W, 3 * W * H + 7),
                                       'expected step*height'),
    'no data': (('rgb8', W, H, 3 * W, 0), 'expected step*height'),
    'step smaller than a row': (('bgr8', W, H, 3 * W - 1, (3 * W - 1) * H),
                                'smaller than a row'),
    'zero width': (('rgb8', 0, H, 0, 0), 'both must be > 0'),
    'zero height': (('mono8', W, 0, W, 0), 'both must be > 0'),
    'more pixels than max_input_pixels': (('mono8', 4 * W, 4 * H, 4 * W, 16 * W * H),
                                          'more than the limit of'),
    'absurd declared size': (('rgb16', 2 ** 31, 2 ** 31, 2 ** 32 - 1, 64),
                             'more than the limit of'),
    'odd width in YUV 4:2:2': (('yuv422', W + 1, H, 2 * W + 2, (2 * W + 2) * H),
                               'needs an even width'),
    'odd height in NV12': (('nv12', W, H + 1, W, W * (H + 1) * 3 // 2), 'needs an even height'),
}


class NodeCounters:
    """The node's frame counters, read from /diagnostics."""

    def __init__(self, probe: Probe, recorder: Recorder) -> None:
        self.probe = probe
        self.recorder = recorder

    def wait(self, condition: Callable[[dict[str, Any]], bool], what: str,
             after_ns: int = 0) -> dict[str, Any]:
        """Return the newest counters, once they arrived after ``after_ns`` and satisfy it."""
        def found() -> Optional[dict[str, Any]]:
            for arrival, message in reversed(self.recorder.messages):
                values = diagnostic_values(message, NODE)
                if arrival > after_ns and values is not None:
                    counts = {name: int(values[key]) for name, key in COUNTERS.items()}
                    counts['last problem'] = values['last problem']
                    return counts if condition(counts) else None
            return None
        return self.probe.spin_until(found, DIAGNOSTICS_TIMEOUT_S, what)

    def idle(self, after_ns: int = 0) -> dict[str, Any]:
        """Return counters that account for every frame received (none pending)."""
        return self.wait(lambda c: c['received'] == sum(
            c[name] for name in COUNTERS if name != 'received'), 'every frame accounted for',
            after_ns)


@pytest.fixture(scope='module')
def counters(probe: Probe, diagnostics: Recorder) -> NodeCounters:
    """Return the node's counters."""
    return NodeCounters(probe, diagnostics)


def good_sender(camera: Any, rgb: np.ndarray) -> Callable[[int], None]:
    """Return ``publish(stamp)`` sending a well-formed rgb8 frame."""
    return lambda stamp: camera.publish(camera_image(rgb, 'rgb8', header_at(stamp, 'camera')))


def assert_served(probe: Probe, camera: Any, labels: Recorder, rgb: np.ndarray) -> np.ndarray:
    """Send good frames until one is labelled; return its labels."""
    _, got = send_until_answered(probe, good_sender(camera, rgb), {'labels': labels})
    message = got['labels']
    assert (message.width, message.height) == (rgb.shape[1], rgb.shape[0])
    return image_array(message)


def send_bad(probe: Probe, camera: Any, counters: NodeCounters, message: Any,
             counter: str = 'malformed') -> dict[str, Any]:
    """Publish ``message`` (stamped now) until the node counts it; return the counters."""
    before = counters.idle()
    sent = time.time_ns()
    message.header = header_at(sent, 'camera')
    camera.publish(message)
    return counters.wait(lambda c: c[counter] > before[counter],
                         f'the bad frame to be counted as {counter}', sent)


@pytest.mark.parametrize('kind', list(BAD_FRAMES))
def test_bad_frame_is_counted_reported_and_skipped(probe: Probe, segmenter: NodeProcess,
                                                   camera: Any, labels: Recorder,
                                                   counters: NodeCounters, scene: np.ndarray,
                                                   kind: str) -> None:
    """A broken frame is dropped with its reason in the log and diagnostics; the next works."""
    fields, reason = BAD_FRAMES[kind]
    assert_served(probe, camera, labels, scene)
    before = counters.idle()
    after = send_bad(probe, camera, counters, raw_image(*fields))
    assert after['malformed'] == before['malformed'] + 1, (before, after)
    assert after['failed'] == before['failed'] == 0, after
    assert reason in after['last problem'], after['last problem']
    log = segmenter.log()
    assert 'malformed' in log and reason in log, segmenter.describe()
    assert 'Traceback' not in log, segmenter.describe()
    assert_served(probe, camera, labels, scene)


def test_stamp_going_backwards(probe: Probe, camera: Any, labels: Recorder,
                               counters: NodeCounters, scene: np.ndarray,
                               segmenter: NodeProcess) -> None:
    """A frame older than the last one is dropped and counted; newer frames go on."""
    assert_served(probe, camera, labels, scene)
    before = counters.idle()
    sent = time.time_ns()
    camera.publish(camera_image(scene, 'rgb8', header_at(sent - 10_000_000_000, 'camera')))
    after = counters.wait(lambda c: c['backwards'] > before['backwards'],
                          'the stale frame to be counted', sent)
    assert after['backwards'] == before['backwards'] + 1
    assert after['malformed'] == before['malformed'] and after['failed'] == 0
    assert 'went back in time' in after['last problem']
    assert 'went back in time' in segmenter.log()
    assert_served(probe, camera, labels, scene)


def test_repeated_warnings_are_throttled(probe: Probe, segmenter: NodeProcess, camera: Any,
                                         labels: Recorder, counters: NodeCounters,
                                         scene: np.ndarray) -> None:
    """A camera sending nothing but broken frames gets a few log lines, not one per frame."""
    reason = 'unsupported encoding'
    before = counters.idle()
    lines_before = segmenter.log().count(reason)
    started = time.monotonic()
    bad = raw_image('h264', W, H, 3 * W, 3 * W * H)
    for _ in range(60):
        bad.header = header_at(time.time_ns(), 'camera')
        camera.publish(bad)
        probe.spin_for(0.02)
    after = counters.idle(time.time_ns())
    elapsed = time.monotonic() - started
    lines = segmenter.log().count(reason) - lines_before
    taken = after['malformed'] - before['malformed']
    assert taken >= 20, f'only {taken} of 60 broken frames reached the decoder'
    # One line per kind of problem per throttle period (plus the one that opens the burst).
    assert lines <= 1 + elapsed / WARN_THROTTLE_S, f'{lines} log lines for {taken} frames'
    assert_served(probe, camera, labels, scene)


def as_16bit(rgb: np.ndarray, bigendian: bool) -> Image:
    """Return ``rgb`` as rgb16 whose high bytes are the 8-bit values (low bytes are junk)."""
    wide = (rgb.astype(np.uint16) << 8) | 0x5A
    data = wide.astype('>u2' if bigendian else '<u2').tobytes()
    message = Image(height=rgb.shape[0], width=rgb.shape[1], encoding='rgb16',
                    is_bigendian=int(bigendian), step=rgb.shape[1] * 6)
    message.data = array.array('B', data)
    return message


@pytest.mark.parametrize('bigendian', [False, True])
def test_16bit_frames_in_either_byte_order_match_8bit(probe: Probe, camera: Any,
                                                      labels: Recorder, scene: np.ndarray,
                                                      counters: NodeCounters,
                                                      bigendian: bool) -> None:
    """rgb16 frames are converted by their high byte, honouring is_bigendian."""
    expected = assert_served(probe, camera, labels, scene)

    def publish(stamp: int) -> None:
        message = as_16bit(scene, bigendian)
        message.header = header_at(stamp, 'camera')
        camera.publish(message)

    _, got = send_until_answered(probe, publish, {'labels': labels})
    assert np.array_equal(image_array(got['labels']), expected)
    assert counters.idle()['failed'] == 0


def converted(encoding: str, rgb: np.ndarray) -> Image:
    """Return ``rgb`` packed as a Bayer or YUV camera would send it."""
    height, width = rgb.shape[:2]
    if encoding == 'bayer_rggb8':
        mosaic = np.zeros((height, width), np.uint8)
        mosaic[0::2, 0::2], mosaic[1::2, 1::2] = rgb[0::2, 0::2, 0], rgb[1::2, 1::2, 2]
        mosaic[0::2, 1::2], mosaic[1::2, 0::2] = rgb[0::2, 1::2, 1], rgb[1::2, 0::2, 1]
        data, step = mosaic.tobytes(), width
    elif encoding == 'yuv422_yuy2':
        yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)
        packed = np.empty((height, width, 2), np.uint8)
        packed[..., 0] = yuv[..., 0]
        packed[:, 0::2, 1], packed[:, 1::2, 1] = yuv[:, 0::2, 1], yuv[:, 0::2, 2]
        data, step = packed.tobytes(), 2 * width
    else:  # nv12
        i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
        luma, chroma = i420[:height], i420[height:].reshape(2, -1)
        data, step = luma.tobytes() + np.stack(chroma, 1).tobytes(), width
    message = Image(height=height, width=width, encoding=encoding, step=step)
    message.data = array.array('B', data)
    return message


@pytest.mark.parametrize('encoding', ['bayer_rggb8', 'yuv422_yuy2', 'nv12'])
def test_bayer_and_yuv_frames_are_converted(probe: Probe, camera: Any, labels: Recorder,
                                            scene: np.ndarray, counters: NodeCounters,
                                            encoding: str) -> None:
    """Bayer and YUV frames are demosaiced or converted and segmented, not dropped."""
    before = counters.idle()

    def publish(stamp: int) -> None:
        message = converted(encoding, scene)
        message.header = header_at(stamp, 'camera')
        camera.publish(message)

    _, got = send_until_answered(probe, publish, {'labels': labels})
    assert (got['labels'].width, got['labels'].height) == CAMERA_SIZE
    after = counters.idle(time.time_ns())
    assert after['malformed'] == before['malformed'] and after['failed'] == 0


def test_bad_compressed_payloads(probe: Probe, segmenter: NodeProcess, labels: Recorder,
                                 counters: NodeCounters, scene: np.ndarray) -> None:
    """Empty, corrupt and depth payloads on image/compressed are counted; JPEG goes on."""
    topic = f'{NAMESPACE}/image/compressed'
    compressed = probe.node.create_publisher(CompressedImage, topic, qos_profile_sensor_data)
    result = probe.set_parameters(NODE, {'input_transport': 'compressed'})[0]
    assert result.successful, result.reason
    try:
        probe.spin_until(compressed.get_subscription_count, 30.0, f'a subscription on {topic}')
        ok, jpeg = cv2.imencode('.jpg', scene[..., ::-1])
        payloads = {'empty payload': ('jpeg', b'', 'empty payload'),
                    'random bytes': ('jpeg', bytes(range(256)) * 4, 'cannot read the size'),
                    'cut-off JPEG': ('jpeg', jpeg.tobytes()[:20], 'cannot read the size'),
                    'depth map': ('16UC1; compressedDepth png', jpeg.tobytes(),
                                  'compressedDepth')}
        for name, (fmt, data, reason) in payloads.items():
            after = send_bad(probe, compressed, counters, CompressedImage(format=fmt, data=data))
            assert reason in after['last problem'], (name, after['last problem'])
            assert reason in segmenter.log(), (name, segmenter.describe())

        def publish(stamp: int) -> None:
            compressed.publish(CompressedImage(header=header_at(stamp, 'camera'),
                                               format='jpeg', data=jpeg.tobytes()))
        send_until_answered(probe, publish, {'labels': labels})
        assert counters.idle()['failed'] == 0
    finally:
        result = probe.set_parameters(NODE, {'input_transport': 'raw'})[0]
        probe.node.destroy_publisher(compressed)
    assert result.successful, result.reason


ENCODINGS = ['rgb8', 'bgr8', 'mono8', 'rgba8', '8UC3', 'mono16', 'rgb16', 'bgra16', '16UC1',
             'bayer_grbg8', 'bayer_bggr16', 'yuv422', 'yuyv', 'nv12', 'nv21',
             '32FC1', '8SC3', '16UC2', 'nv24', 'jpeg', '', 'RGB8']
BYTES_PER_PIXEL = {'rgb8': 3, 'bgr8': 3, '8UC3': 3, 'rgba8': 4, 'bgra16': 8, 'mono16': 2,
                   'rgb16': 6, '16UC1': 2, 'bayer_bggr16': 2, 'yuv422': 2, 'yuyv': 2,
                   '32FC1': 4, '8SC3': 3, '16UC2': 4}
HUGE = [2 ** 16, 2 ** 31, 2 ** 32 - 1]
SESSION_START_NS = time.time_ns()


def mostly(draw: Any, usual: st.SearchStrategy, rare: st.SearchStrategy) -> Any:
    """Draw from ``usual`` about four times in five, else from ``rare``."""
    # Hypothesis favours the ends of integer ranges; a sampled index is closer to uniform.
    return draw(usual) if draw(st.sampled_from(range(5))) else draw(rare)


@st.composite
def image_messages(draw: Any) -> Image:
    """Draw an Image message: well formed about one time in six, else broken somehow."""
    encoding = mostly(draw, st.sampled_from(ENCODINGS), st.text(max_size=12))
    width = mostly(draw, st.integers(1, 48), st.sampled_from([0, *HUGE]))
    height = mostly(draw, st.integers(1, 48), st.sampled_from([0, *HUGE]))
    row = width * BYTES_PER_PIXEL.get(encoding, 1)
    step = mostly(draw, st.sampled_from([row, row, row + 5]),
                  st.sampled_from([max(row - 1, 0)]) | st.integers(0, 2 ** 32 - 1))
    step = min(step, 2 ** 32 - 1)
    rows = height * 3 // 2 if encoding in ('nv12', 'nv21') else height
    exact = step * rows if step * rows <= 40_000 else 0
    size = mostly(draw, st.just(exact),
                  st.sampled_from([exact + 1, max(exact - 1, 0)]) | st.integers(0, 512))
    message = Image(width=width, height=height, encoding=encoding, step=step,
                    is_bigendian=mostly(draw, st.integers(0, 1), st.integers(2, 255)))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    message.data = array.array('B', np.random.default_rng(seed).bytes(size))
    # Stamps from the past only, so that the good frame sent after it is always newer.
    message.header = header_at(draw(st.integers(0, SESSION_START_NS)), 'camera')
    return message


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(message=image_messages())
def test_generated_frames_never_break_the_node(probe: Probe, segmenter: NodeProcess,
                                               camera: Any, labels: Recorder,
                                               scene: np.ndarray, message: Image) -> None:
    """Whatever Image arrives, the node stays up and labels the next good frame."""
    camera.publish(message)
    probe.spin_for(0.02)
    assert_served(probe, camera, labels, scene)


def test_no_frame_failed_and_every_frame_is_accounted_for(counters: NodeCounters,
                                                          segmenter: NodeProcess) -> None:
    """After all of the above: no frame hit an unexpected error, and the counts add up."""
    final = counters.idle(time.time_ns())
    assert final['failed'] == 0, final
    assert final['malformed'] >= len(BAD_FRAMES) and final['backwards'] >= 1, final
    assert 'Traceback' not in segmenter.log(), segmenter.describe()


class RacingExecutor:
    """Raises ``error`` from spin_once() a given number of times, then ends the node."""

    def __init__(self, races: int, error: Exception = InvalidHandle(
            'cannot use Destroyable because destruction was requested')) -> None:
        self.races, self.spins, self.error = races, 0, error
        failures: list[str] = []
        self.node = SimpleNamespace(context=SimpleNamespace(ok=lambda: True),
                                    finalized=threading.Event(), failures=failures,
                                    callback_failures=ProblemLog(failures.append))

    def spin_once(self, timeout_sec: float) -> None:
        self.spins += 1
        if self.spins <= self.races:
            raise self.error
        self.node.finalized.set()


def test_spinning_goes_on_after_a_subscription_died_under_the_wait_set() -> None:
    # The real race (deactivate on a worker thread while the spinning thread builds its wait
    # set) cannot be made to happen on demand; this checks what the node does when it does.
    recovering = RacingExecutor(races=3)
    serve(recovering.node, recovering)
    assert recovering.spins == 4 and not recovering.node.failures
    stuck = RacingExecutor(races=MAX_WAIT_SET_RACES + 1)
    with pytest.raises(InvalidHandle):
        serve(stuck.node, stuck)
    assert stuck.spins == MAX_WAIT_SET_RACES + 1


def test_spinning_goes_on_after_a_callback_raised() -> None:
    failing = RacingExecutor(races=5, error=ValueError('99 is not a valid Parameter.Type'))
    serve(failing.node, failing)
    assert failing.spins == 6
    assert failing.node.failures == [
        'a callback failed and was skipped: ValueError: 99 is not a valid Parameter.Type']
