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
reliability: auto over real DDS: the node subscribes as the camera publishes, and follows it.

The node starts with no camera (best effort, which matches any camera); a reliable-only
camera appears and the node resubscribes reliable; a best-effort camera joins and the node
goes back to best effort. Labels come out throughout. The subscription's QoS is read from the
ROS graph, as ``ros2 topic info -v`` shows it.
"""

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from ros_helpers import (camera_image, header_at, NodeProcess, Probe, send_until_answered,
                         START_TIMEOUT_S)
from sensor_msgs.msg import Image

from espnet_ros.ros.parameter_table import BY_NAME, Reliability

NAMESPACE = '/qosauto'
IMAGE_TOPIC = f'{NAMESPACE}/image'
RELIABLE_CAMERA = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
SWITCH_TIMEOUT_S = 30.0
NODE_PARAMETERS = {'model': 'espnet_c_p2q3_cityscapes', 'input_width': 256,
                   'input_height': 128, 'device': 'cpu', 'precision': 'fp32',
                   'publish_color': False, 'publish_overlay': False}


@pytest.fixture(scope='module')
def segmenter(probe: Probe, weights_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """Start the node with the default reliability (auto) in its own namespace."""
    assert 'reliability' not in NODE_PARAMETERS
    node = NodeProcess('segmenter', NODE_PARAMETERS, namespace=NAMESPACE,
                       weights_dir=weights_dir, log_dir=tmp_path_factory.mktemp('qos'))
    probe.watched.append(node)
    try:
        probe.spin_until(lambda: probe.node.count_subscribers(IMAGE_TOPIC), START_TIMEOUT_S,
                         'the segmenter to subscribe')
        yield node
    finally:
        probe.watched.remove(node)
        status = node.stop()
    assert status == 0, node.describe()


def subscription_reliability(probe: Probe) -> set[ReliabilityPolicy]:
    """Return the reliability of the node's camera subscriptions, from the ROS graph."""
    return {info.qos_profile.reliability
            for info in probe.node.get_subscriptions_info_by_topic(IMAGE_TOPIC)}


def sender(publisher: object) -> object:
    """Return a function that publishes one grey frame with a given stamp."""
    rgb = np.full((120, 160, 3), 100, np.uint8)
    return lambda stamp: publisher.publish(camera_image(rgb, 'rgb8', header_at(stamp, 'cam')))


def test_auto_is_the_default() -> None:
    """The parameter table makes auto the default."""
    assert BY_NAME['reliability'].default == Reliability.AUTO


def test_auto_follows_the_camera(probe: Probe, segmenter: NodeProcess) -> None:
    """No camera: best effort; a reliable camera: reliable; a best-effort one joins: back."""
    assert subscription_reliability(probe) == {ReliabilityPolicy.BEST_EFFORT}
    labels = probe.record(Image, f'{NAMESPACE}/segmentation/labels')
    reliable = probe.node.create_publisher(Image, IMAGE_TOPIC, RELIABLE_CAMERA)
    best_effort = None
    try:
        probe.spin_until(lambda: subscription_reliability(probe) == {
            ReliabilityPolicy.RELIABLE}, SWITCH_TIMEOUT_S, 'a reliable subscription')
        send_until_answered(probe, sender(reliable), {'labels': labels})
        assert 'subscribing reliable (reliability auto)' in segmenter.log()
        best_effort = probe.node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
        probe.spin_until(lambda: subscription_reliability(probe) == {
            ReliabilityPolicy.BEST_EFFORT}, SWITCH_TIMEOUT_S, 'a best-effort subscription')
        probe.spin_until(best_effort.get_subscription_count, SWITCH_TIMEOUT_S,
                         'the best-effort camera to match')
        send_until_answered(probe, sender(best_effort), {'labels': labels})
    finally:
        probe.forget([labels])
        probe.node.destroy_publisher(reliable)
        if best_effort is not None:
            probe.node.destroy_publisher(best_effort)
    # A mismatch lasts until the next look at the publishers: no warning, no advice.
    assert '[WARN]' not in segmenter.log(), segmenter.describe()
