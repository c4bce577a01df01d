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
The segmenter node as users run it: its own process, real DDS, real checkpoints.

One node (ESPNet-C p=2 q=3 at 256x128 on the CPU, the camera remapped as the README says)
serves the whole module; tests that change its parameters put them back. The test process
plays the camera and checks every output against the engine run on the same pixels.
"""

import json
from pathlib import Path
import time
from typing import Any, Callable, Iterable, Iterator

import cv2
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from ros_helpers import (camera_image, header_at, image_array, NodeProcess,
                         Probe, send_until_answered, serving, stamp_ns)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import String
import torch


MODEL = 'espnet_c_p2q3_cityscapes'
NETWORK_SIZE = (256, 128)   # (width, height)
CAMERA_SIZE = (320, 240)    # different aspect: x and y scale differently
NODE = '/segmenter'
FRAME_ID = 'front_camera'
IMAGE_TOPIC = '/front/image_raw'
INFO_TOPIC = '/front/camera_info'
OUTPUTS = {'labels': ('mono8', 1), 'color': ('rgb8', 3), 'overlay': ('rgb8', 3),
           'confidence': ('32FC1', 4)}
NODE_PARAMETERS = {'model': MODEL, 'input_width': NETWORK_SIZE[0],
                   'input_height': NETWORK_SIZE[1], 'device': 'cpu', 'precision': 'fp32',
                   'publish_confidence': True, 'threads': 1}
# What the README tells users: remapping image alone also moves image/compressed, as with
# image_transport (test_compressed_input subscribes to IMAGE_TOPIC + '/compressed').
REMAPS = (('image', IMAGE_TOPIC), ('camera_info', INFO_TOPIC))
K = [300.0, 0.0, 161.5, 0.0, 310.0, 119.5, 0.0, 0.0, 1.0]
P = [300.0, 0.0, 161.5, -15.0, 0.0, 310.0, 119.5, 0.0, 0.0, 0.0, 1.0, 0.0]
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope='module')
def segmenter(probe: Probe, weights_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """Start the node for the module; check it exits cleanly on Ctrl-C."""
    node = NodeProcess('segmenter', NODE_PARAMETERS, weights_dir=weights_dir, remaps=REMAPS,
                       log_dir=tmp_path_factory.mktemp('segmenter'))
    with serving(probe, node, IMAGE_TOPIC):
        yield node


@pytest.fixture(scope='module')
def camera(cityscapes_image: Path) -> np.ndarray:
    """Return a street scene at the camera size, RGB."""
    bgr = cv2.resize(cv2.imread(str(cityscapes_image)), CAMERA_SIZE, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(bgr[..., ::-1])


@pytest.fixture(scope='module')
def publishers(probe: Probe, segmenter: NodeProcess) -> dict[str, Any]:
    """Return the camera's publishers, matched with the node's subscriptions."""
    publishers = {
        'image': probe.node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data),
        'info': probe.node.create_publisher(CameraInfo, INFO_TOPIC, qos_profile_sensor_data),
        'compressed': probe.node.create_publisher(CompressedImage, IMAGE_TOPIC + '/compressed',
                                                  qos_profile_sensor_data)}
    probe.spin_until(lambda: publishers['image'].get_subscription_count()
                     and publishers['info'].get_subscription_count(), 30.0,
                     'the camera topics to match')
    return publishers


class ParameterChanges:
    """Changes the node's parameters through its services, remembering the first values."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.originals: dict[str, Any] = {}

    def _remember(self, names: Iterable[str]) -> None:
        new = [name for name in names if name not in self.originals]
        self.originals.update(self.probe.get_parameters(NODE, new))

    def __call__(self, values: dict[str, Any], atomically: bool = True) -> list:
        """Set ``values``; return the SetParametersResult of each call."""
        self._remember(values)
        return self.probe.set_parameters(NODE, values, atomically=atomically)

    def start(self, values: dict[str, Any]) -> Future:
        """Start setting ``values`` at once; return the future answer."""
        self._remember(values)
        return self.probe.set_parameters_async(NODE, values)

    def restore(self) -> None:
        """Put back every value that changed."""
        current = self.probe.get_parameters(NODE, list(self.originals))
        changed = {n: v for n, v in self.originals.items() if current[n] != v}
        if changed:
            result = self.probe.set_parameters(NODE, changed, atomically=True)[0]
            assert result.successful, f'could not restore {changed}: {result.reason}'


@pytest.fixture
def parameters(probe: Probe, segmenter: NodeProcess) -> Iterator[ParameterChanges]:
    """Return a parameter changer for the node; changed values are put back afterwards."""
    changes = ParameterChanges(probe)
    yield changes
    changes.restore()


def frame_sender(publishers: dict[str, Any], rgb: np.ndarray, encoding: str = 'rgb8',
                 row_padding: int = 0) -> Callable[[int], None]:
    """Return ``publish(stamp)``: CameraInfo then the image, sharing one header."""
    def publish(stamp: int) -> None:
        header = header_at(stamp, FRAME_ID)
        publishers['info'].publish(CameraInfo(
            header=header, width=CAMERA_SIZE[0], height=CAMERA_SIZE[1],
            distortion_model='plumb_bob', d=[0.1, -0.05, 0.0, 0.0, 0.0], k=K,
            r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], p=P))
        publishers['image'].publish(camera_image(rgb, encoding, header, row_padding))
    return publish


def exchange(probe: Probe, publish: Callable[[int], None], names: tuple[str, ...],
             **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """Subscribe to outputs ``names``, send frames until one has them all, unsubscribe."""
    topics = {name: f'/segmentation/{name}' for name in names}
    recorders = {name: probe.record(CameraInfo if name == 'camera_info' else Image, topic)
                 for name, topic in topics.items()}
    try:
        return send_until_answered(probe, publish, recorders, **kwargs)
    finally:
        probe.forget(recorders.values())


def check_outputs(got: dict[str, Any], stamp: int, size: tuple[int, int]) -> dict:
    """Check header, encoding, size and step of every output; return them as arrays."""
    arrays = {}
    for name, message in got.items():
        assert message.header == header_at(stamp, FRAME_ID), f'{name}: {message.header}'
        assert (message.width, message.height) == size, name
        if name in OUTPUTS:
            encoding, pixel_bytes = OUTPUTS[name]
            assert message.encoding == encoding, name
            assert message.step == size[0] * pixel_bytes and not message.is_bigendian, name
            arrays[name] = image_array(message)
    return arrays


def test_live_parameters_apply_to_next_frame(probe: Probe, publishers: dict, camera: np.ndarray,
                                             parameters: ParameterChanges) -> None:
    """overlay_alpha and publish_color, set through the parameter service, take effect."""
    send = frame_sender(publishers, camera)
    for alpha in (0.0, 1.0):
        assert parameters({'overlay_alpha': alpha})[0].successful
        _, got = exchange(probe, send, ('color', 'overlay'))
        overlay, color = image_array(got['overlay']), image_array(got['color'])
        assert np.array_equal(overlay, camera if alpha == 0.0 else color), f'alpha {alpha}'
    color = probe.record(Image, '/segmentation/color')
    labels = probe.record(Image, '/segmentation/labels')
    try:
        # Colour flows first, so its absence below is the parameter, not a missed subscriber.
        send_until_answered(probe, send, {'labels': labels, 'color': color})
        assert parameters({'publish_color': False})[0].successful
        switched_off = time.time_ns()
        send_until_answered(probe, send, {'labels': labels})
        probe.spin_for(1.0)
        assert not [m for _, m in color.messages if stamp_ns(m.header) > switched_off]
        assert parameters({'publish_color': True})[0].successful
        send_until_answered(probe, send, {'labels': labels, 'color': color})
    finally:
        probe.forget([color, labels])


@pytest.mark.parametrize('values,because', [
    ({'overlay_alpha': 2.0}, 'range'),
    ({'overlay_alpha': 'opaque'}, 'type'),
    ({'model': 'no_such_model'}, 'unknown model'),
    ({'input_width': 300}, 'multiples of 8'),
    ({'autostart': False}, 'read-only'),
])
def test_invalid_parameters_are_refused(probe: Probe, publishers: dict, camera: np.ndarray,
                                        parameters: ParameterChanges, values: dict,
                                        because: str) -> None:
    """A bad value is refused with the reason; the old value stays and frames still flow."""
    names = list(values)
    before = probe.get_parameters(NODE, names)
    result = parameters(values, atomically=False)[0]
    assert not result.successful
    assert because in result.reason.lower(), result.reason
    assert probe.get_parameters(NODE, names) == before
    stamp, got = exchange(probe, frame_sender(publishers, camera), ('labels',))
    check_outputs(got, stamp, CAMERA_SIZE)


def test_lone_input_width_keeps_the_training_aspect(
        probe: Probe, publishers: dict, camera: np.ndarray, parameters: ParameterChanges,
        segmenter: NodeProcess) -> None:
    """input_width alone runs at the training aspect ratio; a width off the stride is refused."""
    assert parameters({'output_resolution': 'network'})[0].successful
    result = parameters({'input_width': 192, 'input_height': 0})[0]
    assert result.successful, result.reason
    stamp, got = exchange(probe, frame_sender(publishers, camera), ('labels',))
    # 1024x512 training size: 192 wide is 96 high, and that is what the network ran at.
    check_outputs(got, stamp, (192, 96))
    assert probe.get_parameters(NODE, ['input_width', 'input_height']) == {
        'input_width': 192, 'input_height': 0}
    assert (f'model {MODEL} at 192x96 (height from the training aspect ratio 1024x512, '
            'rounded to a multiple of 8)') in segmenter.log(), segmenter.describe()
    result = parameters({'input_width': 250}, atomically=False)[0]
    assert not result.successful
    assert 'input width 250' in result.reason and 'nearest: 248 or 256' in result.reason, (
        result.reason)
    assert probe.get_parameters(NODE, ['input_width']) == {'input_width': 192}
    stamp, got = exchange(probe, frame_sender(publishers, camera), ('labels',))
    check_outputs(got, stamp, (192, 96))


def test_device_auto_warns_once(probe: Probe, parameters: ParameterChanges,
                                segmenter: NodeProcess) -> None:
    """Without CUDA, device auto warns at its first load, not again at every reload."""
    if torch.cuda.is_available():
        pytest.skip('CUDA is available: device auto does not warn')
    warning = 'device auto: CUDA is not available, running on the CPU'
    for values in ({'device': 'auto'}, {'input_width': 192}, {'input_width': 128}):
        result = parameters(values)[0]
        assert result.successful, result.reason
    assert segmenter.log().count(warning) == 1, segmenter.describe()


def test_reload_keeps_serving_then_switches(probe: Probe, publishers: dict, camera: np.ndarray,
                                            parameters: ParameterChanges) -> None:
    """A new model and size load beside the old engine, which serves until the swap."""
    new_model, new_size = 'espnet_p2q3_cityscapes', (320, 160)
    assert parameters({'output_resolution': 'network'})[0].successful
    labels = probe.record(Image, '/segmentation/labels')
    table = probe.record(String, '/segmentation/classes', LATCHED)
    send = frame_sender(publishers, camera)
    # 20 Hz, so that even a quick reload has frames sent while it runs.
    timer = probe.node.create_timer(0.05, lambda: send(time.time_ns()))
    try:
        probe.spin_until(lambda: labels.messages, 60.0, 'labels before the reload')
        requested = time.time_ns()
        answer = parameters.start({'model': new_model, 'input_width': new_size[0],
                                   'input_height': new_size[1]})
        probe.spin_until(answer.done, 120.0, 'the reload')
        swapped = time.time_ns()
        assert answer.result().result.successful, answer.result().result.reason
        probe.spin_until(lambda: [m for _, m in labels.messages
                                  if stamp_ns(m.header) > swapped], 60.0, 'labels after')
        probe.spin_until(lambda: json.loads(table.messages[-1][1].data)['model'] == new_model,
                         10.0, 'the new class table')
    finally:
        probe.node.destroy_timer(timer)
        probe.forget([labels, table])
    sizes = [((m.width, m.height), stamp_ns(m.header)) for _, m in labels.messages]
    assert [size for size, stamp in sizes if stamp < requested][-1] == NETWORK_SIZE
    # Frames sent during the reload: the old engine's, then the new one's, never mixed.
    during = [size for size, stamp in sizes if requested < stamp < swapped]
    switch = during.index(new_size) if new_size in during else len(during)
    assert switch >= 1 and set(during[:switch]) == {NETWORK_SIZE}, during
    assert set(during[switch:] + [size for size, stamp in sizes if stamp > swapped]) == {
        new_size}


@pytest.fixture
def lifecycle_node(probe: Probe, weights_dir: Path, tmp_path: Path) -> Iterator[NodeProcess]:
    """Start a second segmenter, in /lc, that waits to be configured."""
    node = NodeProcess('segmenter', {**NODE_PARAMETERS, 'autostart': False}, namespace='/lc',
                       weights_dir=weights_dir, log_dir=tmp_path)
    probe.watched.append(node)
    try:
        yield node
    finally:
        probe.watched.remove(node)
        status = node.stop()
    assert status == 0, node.describe()


def test_lifecycle_transitions(probe: Probe, camera: np.ndarray,
                               lifecycle_node: NodeProcess) -> None:
    """With autostart false, outputs flow only between activate and deactivate."""
    node, labels_topic = '/lc/segmenter', '/lc/segmentation/labels'
    image = probe.node.create_publisher(Image, '/lc/image', qos_profile_sensor_data)
    labels = probe.record(Image, labels_topic)
    info = probe.record(CameraInfo, '/lc/segmentation/camera_info')
    diagnostics = probe.record(DiagnosticArray, '/diagnostics')

    def send(stamp: int) -> None:
        image.publish(camera_image(camera, 'rgb8', header_at(stamp, FRAME_ID)))

    def send_for(seconds: float) -> int:
        start = time.time_ns()
        for _ in range(int(seconds / 0.1)):
            send(time.time_ns())
            probe.spin_for(0.1)
        return start

    try:
        assert probe.lifecycle_state(node) == 'unconfigured'
        status = probe.spin_until(lambda: [s for _, m in diagnostics.messages for s in m.status
                                           if s.name == f'{node}: segmentation'], 30.0,
                                  'diagnostics of the unconfigured node')[-1]
        assert status.message == 'not configured: no model loaded'
        assert probe.node.count_subscribers('/lc/image') == 0
        assert probe.node.count_publishers(labels_topic) == 0
        assert probe.change_state(node, Transition.TRANSITION_CONFIGURE)
        assert probe.lifecycle_state(node) == 'inactive'
        probe.spin_until(lambda: probe.node.count_publishers(labels_topic) == 1, 30.0,
                         'the output publishers')
        assert probe.node.count_subscribers('/lc/image') == 0
        assert probe.change_state(node, Transition.TRANSITION_ACTIVATE)
        assert probe.lifecycle_state(node) == 'active'
        probe.spin_until(lambda: image.get_subscription_count(), 30.0, 'the camera subscription')
        stamp, got = send_until_answered(probe, send, {'labels': labels})
        assert (got['labels'].width, got['labels'].height) == CAMERA_SIZE
        assert not info.messages, 'camera_info output without a camera_info input'
        assert probe.change_state(node, Transition.TRANSITION_DEACTIVATE)
        assert probe.lifecycle_state(node) == 'inactive'
        probe.spin_until(lambda: probe.node.count_subscribers('/lc/image') == 0, 30.0,
                         'the camera subscription to go')
        probe.spin_for(1.0)  # a frame in flight at deactivate may still land
        quiet_from = send_for(2.0)
        assert not [m for a, m in labels.messages if a > quiet_from]
        assert probe.change_state(node, Transition.TRANSITION_CLEANUP)
        assert probe.lifecycle_state(node) == 'unconfigured'
        probe.spin_until(lambda: probe.node.count_publishers(labels_topic) == 0, 10.0,
                         'the output publishers to go')
    finally:
        probe.forget([labels, info, diagnostics])
        probe.node.destroy_publisher(image)
