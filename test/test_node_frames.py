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
Frames in, outputs out: the segmenter as users run it, its own process, real DDS.

One node (the README's: ESPNet-C p=2 q=3 at 256x128 on the CPU, the camera remapped, see
readme_node.py) serves the whole module; tests that change its parameters put them back.
The test process plays the camera and checks every output against the engine run on the
same pixels: headers, sizes, CameraInfo, the latched class table, compressed input, and a
fast camera whose newest frame wins.
"""

import json
from pathlib import Path
import time
from typing import Any

import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from readme_node import (blend, CAMERA_SIZE, check_outputs, exchange, FRAME_ID, frame_sender,
                         IMAGE_TOPIC, INFO_TOPIC, K, LATCHED, MODEL, NETWORK_SIZE,
                         NODE_PARAMETERS, OUTPUTS, P, ParameterChanges, readme_node_fixtures)
from ros_helpers import (as_seen_by_node, camera_image, diagnostic_values, header_at,
                         NodeProcess, Probe, Recorder, send_until_answered, stamp_ns,
                         WaitTimeout)
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.streaming.diagnostics import PROCESSING_MEDIAN_KEY, THREADS_KEY
from espnet_ros.zoo.registry import get_spec

NODE = '/segmenter'  # the README's name: test_remapped_camera_topic looks it up
FLOOD_HZ = 60.0
# The flood runs at least FLOOD_MIN_S and until FLOOD_FRAMES labels came, at most FLOOD_MAX_S.
FLOOD_MIN_S, FLOOD_FRAMES, FLOOD_MAX_S = 5.0, 12, 45.0
# Waits, not figures: the slow model can take many seconds a frame on a busy machine.
IDLE_TIMEOUT_S = 300.0
SLOW_MODEL = {'model': 'espnet_p2q8_cityscapes', 'input_width': 1024, 'input_height': 512}


segmenter, camera, publishers, parameters = readme_node_fixtures(NODE)


@pytest.fixture(scope='module')
def engine(weights_dir: Path) -> SegmentationEngine:
    """Return the node's model, loaded in the test process."""
    return SegmentationEngine.from_pretrained(MODEL, weights_dir=weights_dir,
                                              input_size=NETWORK_SIZE, device='cpu',
                                              precision='fp32')


@pytest.mark.parametrize('encoding,row_padding', [('rgb8', 0), ('bgr8', 0), ('mono8', 4),
                                                  ('rgba8', 12)])
def test_outputs_carry_input_header_and_match_engine(
        probe: Probe, publishers: dict, camera: np.ndarray, engine: SegmentationEngine,
        encoding: str, row_padding: int) -> None:
    """Every output has the frame's header and size; labels are the engine's, exactly."""
    stamp, got = exchange(probe, frame_sender(publishers, camera, encoding, row_padding),
                          (*OUTPUTS, 'camera_info'))
    out = check_outputs(got, stamp, CAMERA_SIZE)
    pixels, order = as_seen_by_node(camera, encoding)
    expected = engine.segment(pixels, order=order, with_confidence=True)
    # Same checkpoint, preprocessing, thread count and CPU kernels: the same labels. A few
    # pixels may differ where two classes' logits tie to float rounding across processes.
    agreement = float((out['labels'] == expected.labels).mean())
    assert agreement > 0.999, f'{encoding}: only {agreement:.5f} of labels match the engine'
    assert len(np.unique(out['labels'])) >= 4, 'a street scene has more than 3 classes'
    palette = get_spec(MODEL).dataset.palette
    assert np.array_equal(out['color'], palette[out['labels']])
    rgb = pixels if order == 'rgb' else pixels[..., ::-1]
    error = np.abs(out['overlay'].astype(int) - blend(rgb, out['color'], 0.5)).max()
    assert error <= 1, f'overlay is off by {error}'
    assert np.allclose(out['confidence'], expected.confidence, atol=1e-3)
    assert 0.0 < out['confidence'].min() and out['confidence'].max() <= 1.0
    info = got['camera_info']
    assert list(info.k) == K and list(info.p) == P and list(info.d) == [0.1, -0.05, 0, 0, 0]


def test_network_resolution_rescales_camera_info(probe: Probe, publishers: dict,
                                                 camera: np.ndarray, engine: SegmentationEngine,
                                                 parameters: ParameterChanges) -> None:
    """With output_resolution network, outputs and CameraInfo are at the network size."""
    assert parameters({'output_resolution': 'network'})[0].successful
    stamp, got = exchange(probe, frame_sender(publishers, camera), (*OUTPUTS, 'camera_info'))
    out = check_outputs(got, stamp, NETWORK_SIZE)
    expected = engine.segment(camera, output_resolution='network').labels
    assert (out['labels'] == expected).mean() > 0.999
    small = cv2.resize(camera, NETWORK_SIZE, interpolation=cv2.INTER_AREA)
    assert np.abs(out['overlay'].astype(int) - blend(small, out['color'], 0.5)).max() <= 1
    sx, sy = NETWORK_SIZE[0] / CAMERA_SIZE[0], NETWORK_SIZE[1] / CAMERA_SIZE[1]
    scale_k = np.repeat([sx, sy, 1.0], 3)
    scale_p = np.repeat([sx, sy, 1.0], 4)
    assert np.allclose(got['camera_info'].k, np.array(K) * scale_k)
    assert np.allclose(got['camera_info'].p, np.array(P) * scale_p)


def test_remapped_camera_topic(probe: Probe, publishers: dict, camera: np.ndarray) -> None:
    """``-r image:=/front/image_raw`` moves the input; nothing listens on /image."""
    names = dict(probe.node.get_subscriber_names_and_types_by_node('segmenter', '/'))
    assert names.get(IMAGE_TOPIC) == ['sensor_msgs/msg/Image']
    assert names.get(INFO_TOPIC) == ['sensor_msgs/msg/CameraInfo']
    assert '/image' not in names and '/camera_info' not in names
    stray = probe.node.create_publisher(Image, '/image', qos_profile_sensor_data)
    labels = probe.record(Image, '/segmentation/labels')
    try:
        probe.spin_for(0.5)
        stray_stamps = []
        for _ in range(5):
            stray_stamps.append(time.time_ns())
            stray.publish(camera_image(camera, 'rgb8', header_at(stray_stamps[-1], FRAME_ID)))
            probe.spin_for(0.3)
        send_until_answered(probe, frame_sender(publishers, camera), {'labels': labels})
        assert not [s for s in stray_stamps if labels.with_stamp(s)]
    finally:
        probe.forget([labels])
        probe.node.destroy_publisher(stray)


def test_class_table_reaches_late_subscriber(probe: Probe, segmenter: NodeProcess) -> None:
    """The class table, published at configure, is latched for subscribers that come later."""
    table = probe.record(String, '/segmentation/classes', LATCHED)
    try:
        probe.spin_until(lambda: table.messages, 30.0, 'the latched class table')
    finally:
        probe.forget([table])
    content = json.loads(table.messages[-1][1].data)
    spec = get_spec(MODEL)
    assert content['model'] == MODEL and content['dataset'] == spec.dataset.name
    assert [c['id'] for c in content['classes']] == list(range(20))
    assert [c['name'] for c in content['classes']] == list(spec.dataset.classes)
    assert [c['color'] for c in content['classes']] == spec.dataset.palette.tolist()


def test_compressed_input(probe: Probe, publishers: dict, camera: np.ndarray,
                          engine: SegmentationEngine, parameters: ParameterChanges) -> None:
    """input_transport compressed: JPEG frames on image/compressed are segmented."""
    assert parameters({'input_transport': 'compressed'})[0].successful
    compressed_topic = IMAGE_TOPIC + '/compressed'
    probe.spin_until(lambda: publishers['compressed'].get_subscription_count(), 30.0,
                     f'the node to subscribe to {compressed_topic}')
    probe.spin_until(lambda: probe.node.count_subscribers(IMAGE_TOPIC) == 0, 30.0,
                     f'the node to leave {IMAGE_TOPIC}')
    ok, jpeg = cv2.imencode('.jpg', camera[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok

    def publish(stamp: int) -> None:
        # The format string image_transport's compressed publisher writes.
        publishers['compressed'].publish(CompressedImage(
            header=header_at(stamp, FRAME_ID), format='rgb8; jpeg compressed bgr8',
            data=jpeg.tobytes()))

    stamp, got = exchange(probe, publish, ('labels',))
    labels = check_outputs(got, stamp, CAMERA_SIZE)['labels']
    expected = engine.segment(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), order='bgr').labels
    assert (labels == expected).mean() > 0.999


def diagnostics_when_idle(probe: Probe, recorder: Recorder, after_ns: int) -> dict[str, int]:
    """Wait for the node's counters, published after ``after_ns``, with no frame pending."""
    keys = {'received': 'frames received', 'processed': 'frames processed',
            'dropped': 'frames dropped (newer frame arrived)', 'malformed': 'frames malformed',
            'backwards': 'frames with stamp going backwards', 'failed': 'frames failed'}

    def idle() -> Any:
        for arrival, message in reversed(recorder.messages):
            values = diagnostic_values(message, NODE)
            if arrival > after_ns and values is not None:
                counts = {name: int(values[key]) for name, key in keys.items()}
                taken = sum(v for name, v in counts.items() if name != 'received')
                return counts if taken == counts['received'] else None
        return None
    return probe.spin_until(idle, IDLE_TIMEOUT_S, 'diagnostics with every frame accounted for')


def test_fast_camera_drops_frames_with_bounded_latency(probe: Probe, publishers: dict,
                                                       camera: np.ndarray,
                                                       parameters: ParameterChanges) -> None:
    """A 60 Hz camera, a slow model: the newest frame wins, latency stays bounded."""
    result = parameters(SLOW_MODEL)[0]
    assert result.successful, result.reason
    labels = probe.record(Image, '/segmentation/labels')
    diagnostics = probe.record(DiagnosticArray, '/diagnostics')
    sent: list[int] = []
    message = camera_image(camera, 'rgb8', Header(frame_id=FRAME_ID))

    def tick() -> None:
        sent.append(time.time_ns())
        message.header = header_at(sent[-1], FRAME_ID)
        publishers['image'].publish(message)

    try:
        send_until_answered(probe, frame_sender(publishers, camera), {'labels': labels})
        before = diagnostics_when_idle(probe, diagnostics, time.time_ns())
        sent.clear()
        timer = probe.node.create_timer(1.0 / FLOOD_HZ, tick)
        probe.spin_for(FLOOD_MIN_S)
        try:
            probe.spin_until(lambda: len([m for _, m in labels.messages
                                          if stamp_ns(m.header) >= sent[0]]) >= FLOOD_FRAMES,
                             FLOOD_MAX_S - FLOOD_MIN_S, f'{FLOOD_FRAMES} labels')
        except WaitTimeout:
            pass  # a very busy machine: judge the frames that came
        probe.node.destroy_timer(timer)
        stopped = time.time_ns()
        after = diagnostics_when_idle(probe, diagnostics, time.time_ns() + 500_000_000)
        figures = next(values for _, message in reversed(diagnostics.messages)
                       if (values := diagnostic_values(message, NODE)) is not None)
    finally:
        probe.forget([labels, diagnostics])
    # Each frame's decode-to-publish time is part of its stamp-to-publish latency.
    processing_ms = float(figures[PROCESSING_MEDIAN_KEY])
    # The threads parameter reached the inference thread.
    assert figures[THREADS_KEY] == str(NODE_PARAMETERS['threads']), figures
    assert 0 < processing_ms <= float(figures['latency median (ms)']), figures
    delta = {name: after[name] - before[name] for name in after}
    flood = [stamp_ns(m.header) for _, m in labels.messages if stamp_ns(m.header) in set(sent)]
    after_stop = [stamp_ns(m.header) for arrival, m in labels.messages if arrival > stopped]
    report = (f'sent {len(sent)}, counters {delta}, labelled {len(flood)}, labelled after the '
              f'camera stopped {len(after_stop)}')
    print(report)
    assert delta['received'] > 0 and delta['dropped'] > 0, report
    assert delta['processed'] < delta['received'], report
    assert delta['processed'] + delta['dropped'] == delta['received'], report
    assert delta['malformed'] == delta['backwards'] == delta['failed'] == 0, report
    assert len(flood) >= max(2, 0.9 * delta['processed']), report
    assert flood == sorted(flood), 'labels out of order'
    # Newest wins, not a queue: once the camera stops, the frame in flight and at most the
    # newest waiting one come out; a queue would drain its whole backlog.
    assert len(after_stop) <= 2, report
