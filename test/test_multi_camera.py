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
One segmenter serving three cameras on one model, over real DDS with a real checkpoint.

Three cameras of different sizes and frame ids; the test process plays them and checks that
each camera's outputs carry its own header and size, with the labels the engine gives for
that frame alone; that a flooding camera cannot starve a slow one, a silent one holds nobody
back, a bad frame is counted for its own camera only, a reload keeps every camera, and bad
camera names are refused with the reason.
"""

import json
from pathlib import Path
import time
from typing import Any, Callable, Iterator

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from ros_helpers import (as_seen_by_node, camera_image, diagnostic_values, header_at,
                         image_array, NodeProcess, Probe, send_until_answered, serving,
                         stamp_ns)
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from espnet_ros.imaging.files import camera_rgb
from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.streaming.camera_diagnostics import BATCH_SIZES_KEY, STALE, STALE_KEY
from espnet_ros.streaming.diagnostics import PROCESSED_KEY

MODEL = 'espnet_c_p2q3_cityscapes'
NETWORK_SIZE = (256, 128)   # (width, height)
# A name of its own: a node of another module may still be ending under /segmenter.
NODE = '/multi_camera_segmenter'
# Each camera: its (width, height) and frame_id; sizes and aspects all differ.
CAMERAS = {'front': ((320, 240), 'front_link'), 'left': ((200, 150), 'left_link'),
           'rear': ((288, 128), 'rear_link')}
NODE_PARAMETERS = {'model': MODEL, 'input_width': NETWORK_SIZE[0],
                   'input_height': NETWORK_SIZE[1], 'device': 'cpu', 'precision': 'fp32',
                   'threads': 1, 'cameras': list(CAMERAS)}
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
K = [300.0, 0.0, 159.5, 0.0, 300.0, 119.5, 0.0, 0.0, 1.0]
P = [300.0, 0.0, 159.5, 0.0, 0.0, 300.0, 119.5, 0.0, 0.0, 0.0, 1.0, 0.0]
FLOOD_HZ = 30.0
SLOW_PERIOD_S = 1.0
SLOW_FRAMES = 4
# Waits, not figures: a batch can take seconds on a busy two-core machine.
OUTPUT_TIMEOUT_S = 120.0
DIAGNOSTICS_TIMEOUT_S = 60.0


@pytest.fixture(scope='module')
def segmenter(probe: Probe, weights_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """Start one node for the three cameras; check it exits cleanly on Ctrl-C."""
    node = NodeProcess('segmenter', NODE_PARAMETERS, weights_dir=weights_dir,
                       log_dir=tmp_path_factory.mktemp('multi_camera'),
                       remaps=(('__node', NODE.lstrip('/')),))
    with serving(probe, node, '/rear/image'):
        yield node


@pytest.fixture(scope='module')
def engine(weights_dir: Path) -> SegmentationEngine:
    """Return the node's model, loaded in the test process."""
    return SegmentationEngine.from_pretrained(MODEL, weights_dir=weights_dir,
                                              input_size=NETWORK_SIZE, device='cpu',
                                              precision='fp32')


@pytest.fixture(scope='module')
def pictures(street_bgr: np.ndarray) -> dict[str, np.ndarray]:
    """Return each camera's RGB frame: the street scene at that camera's size."""
    return {name: camera_rgb(street_bgr, size) for name, (size, _) in CAMERAS.items()}


@pytest.fixture(scope='module')
def publishers(probe: Probe, segmenter: NodeProcess) -> dict[str, Any]:
    """Return each camera's image and CameraInfo publishers, matched with the node."""
    publishers = {name: (probe.node.create_publisher(Image, f'/{name}/image',
                                                     qos_profile_sensor_data),
                         probe.node.create_publisher(CameraInfo, f'/{name}/camera_info',
                                                     qos_profile_sensor_data))
                  for name in CAMERAS}
    probe.spin_until(lambda: all(image.get_subscription_count() and info.get_subscription_count()
                                 for image, info in publishers.values()), 60.0,
                     'the cameras to match')
    return publishers


def sender(publishers: dict[str, Any], pictures: dict[str, np.ndarray], name: str,
           encoding: str = 'rgb8') -> Callable[[int], None]:
    """Return ``publish(stamp)`` for camera ``name``: CameraInfo, then its frame."""
    (width, height), frame_id = CAMERAS[name]
    image, info = publishers[name]

    def publish(stamp: int) -> None:
        header = header_at(stamp, frame_id)
        info.publish(CameraInfo(header=header, width=width, height=height,
                                distortion_model='plumb_bob', d=[0.0] * 5, k=K,
                                r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], p=P))
        image.publish(camera_image(pictures[name], encoding, header))
    return publish


def diagnostics_of(probe: Probe, node: str, condition: Callable[[dict], bool],
                   what: str) -> dict[str, str]:
    """Wait for a diagnostics message whose ``node`` status meets ``condition``; return it."""
    recorder = probe.record(DiagnosticArray, '/diagnostics')
    try:
        def found() -> Any:
            for _, message in reversed(recorder.messages):
                values = diagnostic_values(message, node)
                if values is not None and condition(values):
                    return values
            return None
        return probe.spin_until(found, DIAGNOSTICS_TIMEOUT_S, what)
    finally:
        probe.forget([recorder])


def status_message(probe: Probe, node: str, condition: Callable[[Any], bool],
                   what: str) -> Any:
    """Wait for ``node``'s DiagnosticStatus meeting ``condition``; return it."""
    recorder = probe.record(DiagnosticArray, '/diagnostics')
    try:
        def found() -> Any:
            for _, message in reversed(recorder.messages):
                for status in message.status:
                    if status.name == f'{node}: segmentation' and condition(status):
                        return status
            return None
        return probe.spin_until(found, DIAGNOSTICS_TIMEOUT_S, what)
    finally:
        probe.forget([recorder])


def test_each_camera_gets_its_own_header_size_and_the_single_frame_labels(
        probe: Probe, publishers: dict, pictures: dict, engine: SegmentationEngine) -> None:
    """Outputs under c/segmentation/ carry camera c's header and size; labels as alone."""
    for name, ((width, height), frame_id) in CAMERAS.items():
        recorders = {output: probe.record(CameraInfo if output == 'camera_info' else Image,
                                          f'/{name}/segmentation/{output}')
                     for output in ('labels', 'color', 'camera_info')}
        try:
            stamp, got = send_until_answered(probe, sender(publishers, pictures, name),
                                             recorders, timeout_s=OUTPUT_TIMEOUT_S)
        finally:
            probe.forget(recorders.values())
        for output, message in got.items():
            assert message.header == header_at(stamp, frame_id), f'{name} {output}'
            assert (message.width, message.height) == (width, height), f'{name} {output}'
        labels = image_array(got['labels'])
        pixels, order = as_seen_by_node(pictures[name], 'rgb8')
        expected = engine.segment(pixels, order=order).labels
        # Ties between two classes' logits may round apart across processes and batch sizes.
        agreement = float((labels == expected).mean())
        assert agreement > 0.999, f'{name}: only {agreement:.5f} of labels match the engine'
        assert len(np.unique(labels)) >= 4, 'a street scene has more than 3 classes'
        # The camera's own CameraInfo, on the labels' grid (the camera's size here).
        assert list(got['camera_info'].k) == K and got['camera_info'].width == width


def test_all_cameras_in_one_batch_each_its_own_outputs(probe: Probe, publishers: dict,
                                                       pictures: dict) -> None:
    """Frames of the three cameras sent together come back each under its own camera."""
    recorders = {name: probe.record(Image, f'/{name}/segmentation/labels') for name in CAMERAS}
    senders = {name: sender(publishers, pictures, name) for name in CAMERAS}
    sent: list[int] = []
    try:
        def all_answered() -> bool:
            return any(all(recorder.with_stamp(stamp) for recorder in recorders.values())
                       for stamp in sent)
        deadline = time.monotonic() + OUTPUT_TIMEOUT_S
        while not all_answered():
            assert time.monotonic() < deadline, 'no frame came back for all three cameras'
            sent.append(time.time_ns())
            for send in senders.values():
                send(sent[-1])
            probe.spin_for(1.0)
    finally:
        probe.forget(recorders.values())
    for name, recorder in recorders.items():
        for _, message in recorder.messages:
            assert message.header.frame_id == CAMERAS[name][1]
            assert (message.width, message.height) == CAMERAS[name][0]
    values = diagnostics_of(probe, NODE, lambda values: BATCH_SIZES_KEY in values,
                            'the totals with batch sizes')
    assert values['cameras'] == ', '.join(CAMERAS)
    sizes = dict(item.split(': ') for item in values[BATCH_SIZES_KEY].split(', '))
    assert set(sizes) <= {'1', '2', '3'} and sizes, values[BATCH_SIZES_KEY]


def test_each_camera_latches_its_class_table_and_label_info(probe: Probe,
                                                            segmenter: NodeProcess) -> None:
    """c/segmentation/classes (and label_info where vision_msgs is) latch for each camera."""
    tables = {name: probe.record(String, f'/{name}/segmentation/classes', LATCHED)
              for name in CAMERAS}
    try:
        probe.spin_until(lambda: all(recorder.messages for recorder in tables.values()),
                         30.0, "every camera's class table")
        for recorder in tables.values():
            assert json.loads(recorder.messages[-1][1].data)['model'] == MODEL
    finally:
        probe.forget(tables.values())
    label_info = pytest.importorskip('vision_msgs.msg', reason='vision_msgs is not installed')
    infos = {name: probe.record(label_info.LabelInfo, f'/{name}/segmentation/label_info',
                                LATCHED) for name in CAMERAS}
    try:
        probe.spin_until(lambda: all(recorder.messages for recorder in infos.values()),
                         30.0, "every camera's LabelInfo")
        for recorder in infos.values():
            assert recorder.messages[-1][1].class_map[0].class_name == 'road'
    finally:
        probe.forget(infos.values())


def test_flooding_cameras_do_not_starve_a_slow_one_and_a_silent_one_holds_none_back(
        probe: Probe, publishers: dict, pictures: dict) -> None:
    """Two cameras at 30 Hz, one at 1 Hz: every slow frame labelled; then it goes silent."""
    recorders = {name: probe.record(Image, f'/{name}/segmentation/labels') for name in CAMERAS}
    flood = [sender(publishers, pictures, name) for name in ('front', 'left')]
    timer = probe.node.create_timer(1.0 / FLOOD_HZ,
                                    lambda: [send(time.time_ns()) for send in flood])
    slow = sender(publishers, pictures, 'rear')
    slow_stamps = []
    try:
        for _ in range(SLOW_FRAMES):
            slow_stamps.append(time.time_ns())
            slow(slow_stamps[-1])
            probe.spin_for(SLOW_PERIOD_S)
        probe.spin_until(lambda: all(recorders['rear'].with_stamp(stamp)
                                     for stamp in slow_stamps), OUTPUT_TIMEOUT_S,
                         'every frame of the slow camera labelled')
        # rear is silent now; front and left go on, and rear is reported stale.
        silent_since = time.time_ns()
        status = status_message(probe, f'{NODE}/rear',
                                lambda status: status.message.startswith(STALE),
                                'the silent camera reported stale')
        assert status.level == b'\x01'
        probe.spin_until(lambda: all(
            any(stamp_ns(message.header) > silent_since for _, message in recorder.messages)
            for recorder in (recorders['front'], recorders['left'])), OUTPUT_TIMEOUT_S,
            'labels of the other cameras while one is silent')
        values = diagnostics_of(probe, NODE, lambda values: values.get(STALE_KEY) == 'rear',
                                'the totals naming the stale camera')
        assert int(values[PROCESSED_KEY]) > 0
    finally:
        probe.node.destroy_timer(timer)
        probe.forget(recorders.values())
    for name in ('front', 'left'):
        assert all(message.header.frame_id == CAMERAS[name][1]
                   for _, message in recorders[name].messages)


def test_bad_frames_are_counted_for_their_camera_alone(probe: Probe, publishers: dict,
                                                       pictures: dict) -> None:
    """A malformed frame and a wrong encoding on left: counted for left; front unaffected."""
    before = diagnostics_of(probe, f'{NODE}/front', lambda values: True, 'front diagnostics')
    image, _ = publishers['left']
    (width, height), frame_id = CAMERAS['left']
    short = camera_image(pictures['left'], 'rgb8', header_at(time.time_ns(), frame_id))
    short.data = short.data[:len(short.data) // 2]  # fewer bytes than step x height
    image.publish(short)
    probe.spin_for(0.2)
    wrong = camera_image(pictures['left'], 'rgb8', header_at(time.time_ns(), frame_id))
    wrong.encoding = '32SC4'
    image.publish(wrong)
    left = diagnostics_of(probe, f'{NODE}/left',
                          lambda values: int(values['frames malformed']) >= 2,
                          'both bad frames counted for left')
    assert 'camera left' in left['last problem']
    recorder = probe.record(Image, '/front/segmentation/labels')
    try:
        send_until_answered(probe, sender(publishers, pictures, 'front'), {'labels': recorder},
                            timeout_s=OUTPUT_TIMEOUT_S)
    finally:
        probe.forget([recorder])
    front = diagnostics_of(probe, f'{NODE}/front', lambda values: True, 'front diagnostics')
    assert front['frames malformed'] == before['frames malformed'] == '0'


def test_bad_cameras_are_refused_at_run_time_with_the_reason(probe: Probe,
                                                             segmenter: NodeProcess) -> None:
    for names, reason in ((['front', 'front'], "'front' is named twice"),
                          (['front', '/rear'], 'must be relative'),
                          (['front', '9lives'], 'not a valid ROS name')):
        (result,) = probe.set_parameters(NODE, {'cameras': names})
        assert not result.successful and reason in result.reason, result.reason
    assert probe.get_parameters(NODE, ['cameras'])['cameras'] == list(CAMERAS)


def test_bad_cameras_are_refused_at_start_up(weights_dir: Path, tmp_path: Path) -> None:
    node = NodeProcess('segmenter', {**NODE_PARAMETERS, 'cameras': ['front', 'front']},
                       weights_dir=weights_dir, log_dir=tmp_path, namespace='/bad')
    try:
        node.process.wait(timeout=120.0)
    finally:
        node.stop()
    assert node.process.returncode == 1, node.describe()
    assert "'front' is named twice" in node.log(), node.describe()


def test_a_reload_keeps_every_camera(probe: Probe, publishers: dict, pictures: dict) -> None:
    """A new network size loads and swaps; every camera is served by the new engine."""
    new_size = (320, 160)
    changed = {'output_resolution': 'network', 'input_width': new_size[0],
               'input_height': new_size[1]}
    (result,) = probe.set_parameters(NODE, changed, atomically=True)
    assert result.successful, result.reason
    try:
        for name in CAMERAS:
            recorder = probe.record(Image, f'/{name}/segmentation/labels')
            try:
                _, got = send_until_answered(probe, sender(publishers, pictures, name),
                                             {'labels': recorder},
                                             timeout_s=OUTPUT_TIMEOUT_S)
            finally:
                probe.forget([recorder])
            assert (got['labels'].width, got['labels'].height) == new_size, name
            assert got['labels'].header.frame_id == CAMERAS[name][1]
    finally:
        (result,) = probe.set_parameters(NODE, {
            'output_resolution': 'input', 'input_width': NETWORK_SIZE[0],
            'input_height': NETWORK_SIZE[1]}, atomically=True)
        assert result.successful, result.reason


def test_changing_cameras_at_run_time_serves_the_new_set(probe: Probe, publishers: dict,
                                                         pictures: dict) -> None:
    """cameras: [front, rear] unsubscribes left and keeps the engine; back to three after."""
    (result,) = probe.set_parameters(NODE, {'cameras': ['front', 'rear']})
    assert result.successful, result.reason
    try:
        probe.spin_until(lambda: probe.node.count_subscribers('/left/image') == 0, 30.0,
                         'left unsubscribed')
        recorder = probe.record(Image, '/rear/segmentation/labels')
        try:
            send_until_answered(probe, sender(publishers, pictures, 'rear'),
                                {'labels': recorder}, timeout_s=OUTPUT_TIMEOUT_S)
        finally:
            probe.forget([recorder])
    finally:
        (result,) = probe.set_parameters(NODE, {'cameras': list(CAMERAS)})
        assert result.successful, result.reason
    probe.spin_until(lambda: probe.node.count_subscribers('/left/image') == 1, 30.0,
                     'left subscribed again')


def test_deactivate_and_activate_keep_every_camera(probe: Probe, publishers: dict,
                                                   pictures: dict) -> None:
    """Deactivation unsubscribes every camera; activation serves them all again."""
    assert probe.change_state(NODE, Transition.TRANSITION_DEACTIVATE)
    try:
        probe.spin_until(lambda: not any(probe.node.count_subscribers(f'/{name}/image')
                                         for name in CAMERAS), 30.0, 'every camera unsubscribed')
    finally:
        assert probe.change_state(NODE, Transition.TRANSITION_ACTIVATE)
    for name in CAMERAS:
        recorder = probe.record(Image, f'/{name}/segmentation/labels')
        try:
            send_until_answered(probe, sender(publishers, pictures, name), {'labels': recorder},
                                timeout_s=OUTPUT_TIMEOUT_S)
        finally:
            probe.forget([recorder])


def test_publish_points_subscribes_each_cameras_depth(
        probe: Probe, segmenter: NodeProcess) -> None:
    """With publish_points, camera c's depth comes from c/depth/image and c/depth/camera_info."""
    (result,) = probe.set_parameters(NODE, {'publish_points': True})
    assert result.successful, result.reason
    try:
        probe.spin_until(lambda: all(
            probe.node.count_subscribers(f'/{name}/depth/{topic}')
            for name in CAMERAS for topic in ('image', 'camera_info')), 30.0,
            "each camera's depth topics subscribed")
        assert not probe.node.count_subscribers('/depth/image')
    finally:
        (result,) = probe.set_parameters(NODE, {'publish_points': False})
        assert result.successful, result.reason
    probe.spin_until(lambda: not probe.node.count_subscribers('/front/depth/image'), 30.0,
                     'the depth topics unsubscribed')
