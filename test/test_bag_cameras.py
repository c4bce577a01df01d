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
``espnet-ros bag`` with ``--image-topic`` given once per camera: one pass, frames batched.

A bag with two cameras of different sizes and frame ids (one raw, one compressed) and the
first camera's CameraInfo; each camera's outputs must come out under its own namespace with
its own headers, sizes and receive times, and labels as the engine gives for the frame alone.
"""

import json
from pathlib import Path
import subprocess
import sys
from typing import Any

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

from espnet_ros.imaging.codec import decode_message
from espnet_ros.offline.bag import BagJob, BagSegmentation
from espnet_ros.offline.messages import typestore
from espnet_ros.offline.stream import OfflineError
from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.runtime.options import Backend, DEFAULT_PRECISION
from espnet_ros.zoo.registry import get_spec

MODEL = 'espnet_p2q3_cityscapes'
SIZE = (128, 64)
ENGINE_ARGS = ['--model', MODEL, '--size', 'x'.join(map(str, SIZE)), '--device', 'cpu']
# Each camera: its image topic, (width, height), frame_id, and whether it is compressed.
CAMERAS = {'/front/image_raw': ((240, 180), 'front_link', False),
           '/rear/image_raw/compressed': ((200, 120), 'rear_link', True)}
INFO_TOPIC = '/front/camera_info'
FRAMES = 3
FIRST_RECEIVED_NS = 200 * 10 ** 9
STORE = get_typestore(Stores.ROS2_JAZZY)
K = [200.0, 0.0, 119.5, 0.0, 200.0, 89.5, 0.0, 0.0, 1.0]


def header(index: int, frame_id: str) -> Any:
    """Return a camera header stamped apart from the receive time."""
    return STORE.types['std_msgs/msg/Header'](
        stamp=STORE.types['builtin_interfaces/msg/Time'](sec=100 + index, nanosec=7 * index),
        frame_id=frame_id)


def camera_message(index: int, bgr: np.ndarray, frame_id: str, compressed: bool) -> Any:
    """Return frame ``index`` as sensor_msgs/Image (bgr8) or CompressedImage (PNG)."""
    if compressed:
        return STORE.types['sensor_msgs/msg/CompressedImage'](
            header=header(index, frame_id), format='bgr8; png compressed bgr8',
            data=cv2.imencode('.png', bgr)[1].reshape(-1))
    height, width = bgr.shape[:2]
    return STORE.types['sensor_msgs/msg/Image'](
        header=header(index, frame_id), height=height, width=width, encoding='bgr8',
        is_bigendian=0, step=width * 3, data=bgr.reshape(-1))


def camera_info(index: int) -> Any:
    """Return the front camera's CameraInfo for frame ``index``."""
    width, height = CAMERAS['/front/image_raw'][0]
    return STORE.types['sensor_msgs/msg/CameraInfo'](
        header=header(index, 'front_link'), height=height, width=width,
        distortion_model='plumb_bob', d=np.zeros(5), k=np.array(K), r=np.eye(3).reshape(-1),
        p=np.array([*K[:3], 0.0, *K[3:6], 0.0, *K[6:], 0.0]),
        binning_x=0, binning_y=0,
        roi=STORE.types['sensor_msgs/msg/RegionOfInterest'](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


@pytest.fixture(scope='module')
def bag(tmp_path_factory: pytest.TempPathFactory, street_bgr: np.ndarray) -> Path:
    """Write the two cameras' frames, interleaved, and the front camera's CameraInfo."""
    path = tmp_path_factory.mktemp('cameras') / 'in'
    with Writer(path, version=8, storage_plugin=StoragePlugin.SQLITE3) as writer:
        connections = {}
        for topic, (_, _, compressed) in CAMERAS.items():
            msgtype = ('sensor_msgs/msg/CompressedImage' if compressed
                       else 'sensor_msgs/msg/Image')
            connections[topic] = (writer.add_connection(topic, msgtype, typestore=STORE),
                                  msgtype)
        info = writer.add_connection(INFO_TOPIC, 'sensor_msgs/msg/CameraInfo', typestore=STORE)
        for index in range(FRAMES):
            received = FIRST_RECEIVED_NS + index * 10 ** 9
            writer.write(info, received, STORE.serialize_cdr(camera_info(index),
                                                             'sensor_msgs/msg/CameraInfo'))
            for offset, (topic, ((width, height), frame_id, compressed)) in enumerate(
                    CAMERAS.items()):
                connection, msgtype = connections[topic]
                picture = cv2.resize(street_bgr, (width, height), interpolation=cv2.INTER_AREA)
                writer.write(connection, received + 1 + offset, STORE.serialize_cdr(
                    camera_message(index, picture, frame_id, compressed), msgtype))
    return path


@pytest.fixture(scope='module')
def engine() -> SegmentationEngine:
    """Return the engine the command builds from ENGINE_ARGS (same defaults)."""
    return SegmentationEngine.from_pretrained(MODEL, input_size=SIZE, device='cpu',
                                              precision=DEFAULT_PRECISION, backend=Backend.AUTO)


def read_bag(path: Path) -> dict[str, list[tuple[int, Any]]]:
    """Return every topic's (receive time, message) pairs of a bag, read with rosbags."""
    store = typestore()
    found: dict[str, list[tuple[int, Any]]] = {}
    with Reader(path) as reader:
        for connection, timestamp, raw in reader.messages():
            found.setdefault(connection.topic, []).append(
                (timestamp, store.deserialize_cdr(raw, connection.msgtype)))
    return found


def test_two_cameras_in_one_pass_each_under_its_namespace(
        bag: Path, tmp_path: Path, engine: SegmentationEngine) -> None:
    out = tmp_path / 'out'
    done = subprocess.run([sys.executable, '-m', 'espnet_ros.cli', 'bag', str(bag),
                           *(argument for topic in CAMERAS
                             for argument in ('--image-topic', topic)),
                           '--out', str(out), '--no-progress', *ENGINE_ARGS],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '/front/segmentation, /rear/segmentation' in done.stdout, done.stdout
    assert f'{FRAMES * len(CAMERAS)} segmented' in done.stdout, done.stdout
    found = read_bag(out)
    for topic, ((width, height), frame_id, _) in CAMERAS.items():
        namespace = '/' + topic.split('/')[1]
        inputs = found[topic]
        labels = found[f'{namespace}/segmentation/labels']
        assert len(labels) == len(inputs) == FRAMES
        for (received, camera), (timestamp, message) in zip(inputs, labels):
            assert timestamp == received
            assert message.header.frame_id == frame_id
            assert (message.header.stamp.sec, message.header.stamp.nanosec) == (
                camera.header.stamp.sec, camera.header.stamp.nanosec)
            assert (message.width, message.height) == (width, height)
            image = decode_message(camera)
            expected = engine.segment(image.pixels, order=image.order).labels
            got = message.data.reshape(height, width)
            # Ties between two classes' logits may round apart across batch sizes.
            assert float((got == expected).mean()) > 0.999, topic
        (_, classes), = found[f'{namespace}/segmentation/classes']
        assert json.loads(classes.data)['model'] == MODEL
        assert len(found[f'{namespace}/segmentation/color']) == FRAMES
    # The front camera's CameraInfo, for its labels; the rear camera recorded none.
    infos = found['/front/segmentation/camera_info']
    assert len(infos) == FRAMES and list(infos[0][1].k) == K
    assert '/rear/segmentation/camera_info' not in found
    assert len(get_spec(MODEL).dataset.classes) > 0


@pytest.mark.parametrize('options, reason', [
    ({'namespace': '/cams'}, "--namespace names one camera's topic"),
    ({'depth_topic': '/front/depth'}, "--depth-topic names one camera's topic"),
    ({'camera_info_topic': INFO_TOPIC}, "--camera-info-topic names one camera's topic"),
    ({'more_image_topics': ('/front/image_raw',)}, '/front/image_raw is given twice'),
])
def test_one_camera_options_are_refused_with_several(bag: Path, tmp_path: Path,
                                                     options: dict, reason: str) -> None:
    fields = {'more_image_topics': ('/rear/image_raw/compressed',), **options}
    with pytest.raises(OfflineError, match=reason):
        BagSegmentation(BagJob(source=bag, image_topic='/front/image_raw',
                               out=tmp_path / 'out', **fields))


def test_two_topics_of_one_namespace_are_refused(tmp_path: Path, street_bgr: np.ndarray
                                                 ) -> None:
    path = tmp_path / 'same'
    picture = cv2.resize(street_bgr, (64, 32))
    with Writer(path, version=8, storage_plugin=StoragePlugin.SQLITE3) as writer:
        for topic in ('/cam/image_raw', '/cam/image_rect'):
            connection = writer.add_connection(topic, 'sensor_msgs/msg/Image', typestore=STORE)
            writer.write(connection, FIRST_RECEIVED_NS, STORE.serialize_cdr(
                camera_message(0, picture, 'cam', False), 'sensor_msgs/msg/Image'))
    with pytest.raises(OfflineError, match=r'one namespace \(/cam\)'):
        BagSegmentation(BagJob(source=path, image_topic='/cam/image_raw',
                               more_image_topics=('/cam/image_rect',), out=tmp_path / 'out'))
