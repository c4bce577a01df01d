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
The segmenter as the README runs it, shared by test_node_frames.py and test_node_parameters.py.

ESPNet-C p=2 q=3 at 256x128 on the CPU, every output on, the camera remapped to
/front/image_raw and /front/camera_info. Each module starts its own node under its own name
(``node_remaps``), so that a node of an earlier module still ending cannot answer for it.
The test process plays the camera: CameraInfo then the image, sharing one header.
"""

from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import cv2
import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from ros_helpers import (camera_image, header_at, image_array, NodeProcess, Probe,
                         send_until_answered, serving)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

MODEL = 'espnet_c_p2q3_cityscapes'
NETWORK_SIZE = (256, 128)   # (width, height)
CAMERA_SIZE = (320, 240)    # different aspect: x and y scale differently
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


def node_remaps(name: str) -> tuple[tuple[str, str], ...]:
    """Return the README's remaps for a node named ``name`` (its topics stay the README's)."""
    return REMAPS if name == 'segmenter' else (*REMAPS, ('__node', name))


def street_scene(cityscapes_image: Path) -> np.ndarray:
    """Return a street scene at the camera size, RGB."""
    bgr = cv2.resize(cv2.imread(str(cityscapes_image)), CAMERA_SIZE, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(bgr[..., ::-1])


def camera_publishers(probe: Probe) -> dict[str, Any]:
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
    """Changes ``node``'s parameters through its services, remembering the first values."""

    def __init__(self, probe: Probe, node: str) -> None:
        self.probe = probe
        self.node = node
        self.originals: dict[str, Any] = {}

    def _remember(self, names: Iterable[str]) -> None:
        new = [name for name in names if name not in self.originals]
        self.originals.update(self.probe.get_parameters(self.node, new))

    def __call__(self, values: dict[str, Any], atomically: bool = True) -> list:
        """Set ``values``; return the SetParametersResult of each call."""
        self._remember(values)
        return self.probe.set_parameters(self.node, values, atomically=atomically)

    def start(self, values: dict[str, Any]) -> Future:
        """Start setting ``values`` at once; return the future answer."""
        self._remember(values)
        return self.probe.set_parameters_async(self.node, values)

    def restore(self) -> None:
        """Put back every value that changed."""
        current = self.probe.get_parameters(self.node, list(self.originals))
        changed = {n: v for n, v in self.originals.items() if current[n] != v}
        if changed:
            result = self.probe.set_parameters(self.node, changed, atomically=True)[0]
            assert result.successful, f'could not restore {changed}: {result.reason}'


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


def blend(rgb: np.ndarray, color: np.ndarray, alpha: float) -> np.ndarray:
    """Return the overlay the node should draw, computed in floating point."""
    mixed = (1.0 - alpha) * rgb.astype(np.float64) + alpha * color.astype(np.float64)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


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


def readme_node_fixtures(node: str) -> tuple[Any, Any, Any, Any]:
    """
    Return the fixtures ``segmenter, camera, publishers, parameters`` of the README's node.

    The module assigns them to those names. ``segmenter`` (module scope) starts the node
    named ``node`` (absolute, in the root namespace) and checks that it exits cleanly on
    Ctrl-C; ``camera`` is the street scene at the camera size, ``publishers`` the camera's
    publishers matched with the node, ``parameters`` a :class:`ParameterChanges` whose
    changes are put back after each test.
    """
    name = node.lstrip('/')

    @pytest.fixture(scope='module')
    def segmenter(probe: Probe, weights_dir: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
        """Start the node for the module; check it exits cleanly on Ctrl-C."""
        process = NodeProcess('segmenter', NODE_PARAMETERS, weights_dir=weights_dir,
                              remaps=node_remaps(name), log_dir=tmp_path_factory.mktemp(name))
        with serving(probe, process, IMAGE_TOPIC):
            yield process

    @pytest.fixture(scope='module')
    def camera(cityscapes_image: Path) -> np.ndarray:
        """Return a street scene at the camera size, RGB."""
        return street_scene(cityscapes_image)

    @pytest.fixture(scope='module')
    def publishers(probe: Probe, segmenter: NodeProcess) -> dict[str, Any]:
        """Return the camera's publishers, matched with the node's subscriptions."""
        return camera_publishers(probe)

    @pytest.fixture
    def parameters(probe: Probe, segmenter: NodeProcess) -> Iterator[ParameterChanges]:
        """Return a parameter changer for the node; changed values are put back afterwards."""
        changes = ParameterChanges(probe, node)
        yield changes
        changes.restore()

    return segmenter, camera, publishers, parameters
