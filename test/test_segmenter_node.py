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

from pathlib import Path
import time
from typing import Iterator

import cv2
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from ros_helpers import (camera_image, header_at, NodeProcess, Probe,
                         send_until_answered)
from sensor_msgs.msg import CameraInfo, Image


MODEL = 'espnet_c_p2q3_cityscapes'
NETWORK_SIZE = (256, 128)   # (width, height)
CAMERA_SIZE = (320, 240)    # different aspect: x and y scale differently
FRAME_ID = 'front_camera'
NODE_PARAMETERS = {'model': MODEL, 'input_width': NETWORK_SIZE[0],
                   'input_height': NETWORK_SIZE[1], 'device': 'cpu', 'precision': 'fp32',
                   'publish_confidence': True, 'threads': 1}


@pytest.fixture(scope='module')
def camera(cityscapes_image: Path) -> np.ndarray:
    """Return a street scene at the camera size, RGB."""
    bgr = cv2.resize(cv2.imread(str(cityscapes_image)), CAMERA_SIZE, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(bgr[..., ::-1])


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
