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
segmentation/label_info (vision_msgs/LabelInfo) over real DDS, as planners read it.

The segmenter runs as its own process; the test subscribes late, with the QoS Nav2's
semantic layer uses (reliable, transient local), and compares the class map with the node's
JSON class table. A model reload must republish it.
"""

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import NodeProcess, Probe, serving
from std_msgs.msg import String

from espnet_ros.zoo.registry import class_table, get_spec

vision_msgs = pytest.importorskip(
    'vision_msgs.msg', reason='vision_msgs is not installed: source a ROS 2 with '
    'ros-<distro>-vision-msgs, or run scripts/setup_env.sh with ../shared/wheels beside the '
    'checkout')

FIRST_MODEL = 'espnet_c_p2q3_cityscapes'
RELOADED_MODEL = 'espnet_p2q8_camvid'
NAMESPACE = '/labelinfo'
NODE = f'{NAMESPACE}/segmenter'
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
WAIT_S = 30.0
RELOAD_WAIT_S = 120.0


@pytest.fixture(scope='module')
def segmenter(probe: Probe, weights_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """Start the node, small and on the CPU, in its own namespace."""
    node = NodeProcess('segmenter', {'model': FIRST_MODEL, 'input_width': 256,
                                     'input_height': 128, 'device': 'cpu',
                                     'precision': 'fp32'},
                       namespace=NAMESPACE, weights_dir=weights_dir,
                       log_dir=tmp_path_factory.mktemp('label_info'))
    with serving(probe, node, f'{NAMESPACE}/image'):
        yield node


def latest(probe: Probe, message_type: Any, topic: str, what: str) -> Any:
    """Subscribe late (latched QoS), wait for the kept message and return it."""
    recorder = probe.record(message_type, topic, LATCHED)
    try:
        probe.spin_until(lambda: recorder.messages, WAIT_S, what)
    finally:
        probe.forget([recorder])
    return recorder.messages[-1][1]


def class_map(label_info: Any) -> list[tuple[int, str]]:
    """Return a LabelInfo's (id, name) pairs."""
    return [(entry.class_id, entry.class_name) for entry in label_info.class_map]


def json_classes(table: String) -> list[tuple[int, str]]:
    """Return the (id, name) pairs of the node's JSON class table."""
    return [(entry['id'], entry['name']) for entry in json.loads(table.data)['classes']]


def test_late_subscriber_gets_the_class_table(probe: Probe, segmenter: NodeProcess) -> None:
    """A subscriber that comes after start-up gets LabelInfo equal to the class table."""
    label_info = latest(probe, vision_msgs.LabelInfo, f'{NAMESPACE}/segmentation/label_info',
                        'the latched LabelInfo')
    table = latest(probe, String, f'{NAMESPACE}/segmentation/classes', 'the class table')
    expected = [(entry['id'], entry['name'])
                for entry in class_table(get_spec(FIRST_MODEL))['classes']]
    assert class_map(label_info) == expected == json_classes(table)
    assert len(expected) == len(get_spec(FIRST_MODEL).dataset.classes)
    # Stamped from when the class table applies (the model's load, on the node's clock), in
    # no frame: the same before any frame and after a reload (README, LabelInfo).
    assert label_info.header.stamp.sec > 0 and label_info.header.frame_id == ''


def test_reload_republishes(probe: Probe, segmenter: NodeProcess) -> None:
    """A model with other classes replaces the kept LabelInfo, for live and late subscribers."""
    live = probe.record(vision_msgs.LabelInfo, f'{NAMESPACE}/segmentation/label_info', LATCHED)
    expected = [(entry['id'], entry['name'])
                for entry in class_table(get_spec(RELOADED_MODEL))['classes']]
    assert expected != class_map(latest(probe, vision_msgs.LabelInfo,
                                        f'{NAMESPACE}/segmentation/label_info', 'LabelInfo'))
    try:
        probe.spin_until(lambda: live.messages, WAIT_S, 'the first LabelInfo')
        (result,) = probe.set_parameters(NODE, {'model': RELOADED_MODEL, 'input_width': 0,
                                                'input_height': 0}, atomically=True)
        assert result.successful, result.reason
        probe.spin_until(lambda: class_map(live.messages[-1][1]) == expected, RELOAD_WAIT_S,
                         'LabelInfo of the reloaded model')
    finally:
        probe.forget([live])
    reloaded = latest(probe, vision_msgs.LabelInfo, f'{NAMESPACE}/segmentation/label_info',
                      'the new LabelInfo')
    assert class_map(reloaded) == expected
    assert reloaded.header.frame_id == ''
    assert (reloaded.header.stamp.sec, reloaded.header.stamp.nanosec) > (
        live.messages[0][1].header.stamp.sec, live.messages[0][1].header.stamp.nanosec)
