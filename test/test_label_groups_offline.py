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

"""``espnet-ros bag --label-map``: a real bag in, the planner's classes out (rosbags, no ROS)."""

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader, Writer
from rosbags.typesys import get_typestore, Stores

from espnet_ros.cli import main as cli_main
from espnet_ros.offline.messages import typestore
from espnet_ros.zoo.label_map import load_for_dataset
from espnet_ros.zoo.registry import get_spec

MODEL = 'espnet_p2q8_cityscapes'
SPEC = get_spec(MODEL)
GROUPS_FILE = Path(__file__).resolve().parents[1] / 'config' / 'cityscapes_groups.yaml'
SIZE = (256, 128)
TOPIC = '/cam/image_raw'
STORE = get_typestore(Stores.ROS2_JAZZY)
FIRST_RECEIVED_NS = 100 * 10 ** 9


def write_bag(path: Path, bgr: np.ndarray) -> Path:
    """Write one bgr8 frame of ``bgr`` on TOPIC."""
    height, width = bgr.shape[:2]
    header = STORE.types['std_msgs/msg/Header'](
        stamp=STORE.types['builtin_interfaces/msg/Time'](sec=100, nanosec=0),
        frame_id='camera_optical')
    message = STORE.types['sensor_msgs/msg/Image'](
        header=header, height=height, width=width, encoding='bgr8', is_bigendian=0,
        step=width * 3, data=bgr.reshape(-1))
    with Writer(path, version=8) as writer:
        connection = writer.add_connection(TOPIC, 'sensor_msgs/msg/Image', typestore=STORE)
        writer.write(connection, FIRST_RECEIVED_NS,
                     STORE.serialize_cdr(message, 'sensor_msgs/msg/Image'))
    return path


def read_bag(path: Path) -> dict[str, list[Any]]:
    """Return every topic's messages of a bag."""
    store = typestore()
    found: dict[str, list[Any]] = {}
    with Reader(path) as reader:
        for connection, _, raw in reader.messages():
            found.setdefault(connection.topic, []).append(
                store.deserialize_cdr(raw, connection.msgtype))
    return found


def labels(found: dict[str, list[Any]]) -> np.ndarray:
    """Return the one labels image of a bag the tool wrote."""
    message, = found['/cam/segmentation/labels']
    return message.data.reshape(message.height, message.width)


@pytest.fixture()
def street(street_bgr: np.ndarray) -> np.ndarray:
    """Return the Cityscapes street at the network size, BGR."""
    return cv2.resize(street_bgr, SIZE, interpolation=cv2.INTER_AREA)


def test_bag_label_map_writes_the_groups(tmp_path: Path, street: np.ndarray,
                                         weights_dir: Path) -> None:
    source = write_bag(tmp_path / 'in', street)
    common = ['bag', str(source), '--image-topic', TOPIC, '--model', MODEL, '--size',
              'x'.join(map(str, SIZE)), '--device', 'cpu', '--weights-dir', str(weights_dir),
              '--outputs', 'labels,color']
    assert cli_main([*common, '--out', str(tmp_path / 'plain')]) == 0
    assert cli_main([*common, '--out', str(tmp_path / 'grouped'),
                     '--label-map', str(GROUPS_FILE)]) == 0
    plain, grouped = read_bag(tmp_path / 'plain'), read_bag(tmp_path / 'grouped')
    label_map = load_for_dataset(GROUPS_FILE, SPEC.dataset)
    np.testing.assert_array_equal(labels(grouped), label_map.lookup()[labels(plain)])
    (label_info,) = grouped['/cam/segmentation/label_info']
    assert [(c.class_id, c.class_name) for c in label_info.class_map] == [
        (0, 'ground'), (1, 'obstacle'), (2, 'person'), (255, 'ignore')]
    (classes,) = grouped['/cam/segmentation/classes']
    assert [entry['name'] for entry in json.loads(classes.data)['classes']] == [
        'ground', 'obstacle', 'person', 'ignore']
    color, = grouped['/cam/segmentation/color']
    rgb = color.data.reshape(color.height, color.width, 3)
    palette = np.zeros((256, 3), np.uint8)
    palette[:len(label_map.groups)] = label_map.palette
    np.testing.assert_array_equal(rgb, palette[labels(grouped)])


def test_bag_refuses_a_bad_map_before_reading(tmp_path: Path, street: np.ndarray,
                                              capsys: pytest.CaptureFixture) -> None:
    source = write_bag(tmp_path / 'in', street)
    bad = tmp_path / 'bad.yaml'
    bad.write_text('groups:\n  - {name: a, color: [1, 2, 3], members: [lawn]}\n')
    assert cli_main(['bag', str(source), '--image-topic', TOPIC, '--model', MODEL,
                     '--out', str(tmp_path / 'out'), '--label-map', str(bad)]) == 2
    error = capsys.readouterr().err
    assert f"{bad}: line 2, group 0 ('a'): unknown class 'lawn'" in error, error
    assert not (tmp_path / 'out').exists()
