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
``espnet-ros bag`` on real rosbag2 bags built here from CamVid frames, read back with rosbags.

Every input frame must come out with its labels, carrying the frame's header and receive
time, and those labels must be the engine's for the same frame. The bags are small: a few
480x360 frames through a small network input, as accuracy is not what is tested.
"""

import json
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, NamedTuple

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

from espnet_ros.cli import main as cli_main
from espnet_ros.imaging.codec import decode_message
from espnet_ros.offline.bag import BagJob, BagSegmentation
from espnet_ros.offline.messages import typestore
from espnet_ros.offline.stream import OfflineError
from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.runtime.options import Backend, DEFAULT_PRECISION
from espnet_ros.streaming.clouds import CloudSettings
from espnet_ros.tools.depth_scenes import flat_world, pinhole_k
from espnet_ros.zoo.registry import class_table, get_spec

MODEL = 'espnet_p2q3_cityscapes'
SIZE = (128, 64)
ENGINE_ARGS = ['--model', MODEL, '--size', 'x'.join(map(str, SIZE)), '--device', 'cpu']
TOPIC = '/cam/image_raw'
FRAMES = 4
FIRST_RECEIVED_NS = 200 * 10 ** 9
# The official vision_msgs 4.x type hash of LabelInfo (share/vision_msgs/msg/LabelInfo.json).
LABEL_INFO_RIHS01 = 'RIHS01_3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783'
STORE = get_typestore(Stores.ROS2_JAZZY)
INTERRUPTED_BAG_FRAMES = 800  # long enough that a signal lands mid-run on a quiet machine
INTERRUPTED_RUN_TIMEOUT_S = 600  # a wait, not a figure: a busy machine starts slowly


def camvid_frames(camvid_dir: Path, count: int) -> list[np.ndarray]:
    """Return the first ``count`` CamVid val frames as BGR (480x360)."""
    return [cv2.imread(str(path)) for path in sorted((camvid_dir / 'val').iterdir())[:count]]


def header(index: int) -> Any:
    """Return the camera header of frame ``index`` (stamps differ from receive times)."""
    return STORE.types['std_msgs/msg/Header'](
        stamp=STORE.types['builtin_interfaces/msg/Time'](sec=100 + index, nanosec=7 * index),
        frame_id=f'camera_optical_{index % 2}')


def raw_image(index: int, bgr: np.ndarray, **fields: Any) -> Any:
    """Return a sensor_msgs/Image (bgr8) of ``bgr``; ``fields`` override for bad frames."""
    height, width = bgr.shape[:2]
    values = {'header': header(index), 'height': height, 'width': width, 'encoding': 'bgr8',
              'is_bigendian': 0, 'step': width * 3, 'data': bgr.reshape(-1), **fields}
    return STORE.types['sensor_msgs/msg/Image'](**values)


def compressed_image(index: int, bgr: np.ndarray) -> Any:
    """Return a sensor_msgs/CompressedImage (JPEG) of ``bgr``."""
    return STORE.types['sensor_msgs/msg/CompressedImage'](
        header=header(index), format='bgr8; jpeg compressed bgr8',
        data=cv2.imencode('.jpg', bgr)[1].reshape(-1))


def write_bag(path: Path, frames: list[Any], *, storage: str = 'sqlite3',
              topic: str = TOPIC, chatter: bool = True) -> Path:
    """Write ``frames`` (messages) one second apart on ``topic``, plus a /chatter topic."""
    msgtype = frames[0].__msgtype__ if frames else 'sensor_msgs/msg/Image'
    with Writer(path, version=8, storage_plugin=StoragePlugin[storage.upper()]) as writer:
        images = writer.add_connection(topic, msgtype, typestore=STORE)
        text = writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=STORE)
        for index, message in enumerate(frames):
            received = FIRST_RECEIVED_NS + index * 10 ** 9
            writer.write(images, received, STORE.serialize_cdr(message, msgtype))
            if chatter:
                writer.write(text, received + 1, STORE.serialize_cdr(
                    STORE.types['std_msgs/msg/String'](data=f'hello {index}'),
                    'std_msgs/msg/String'))
    return path


def read_bag(path: Path) -> dict[str, list[tuple[int, Any]]]:
    """Return every topic's (receive time, message) pairs of a bag, read with rosbags."""
    store = typestore()
    found: dict[str, list[tuple[int, Any]]] = {}
    with Reader(path) as reader:
        for connection, timestamp, raw in reader.messages():
            message = store.deserialize_cdr(raw, connection.msgtype)
            found.setdefault(connection.topic, []).append((timestamp, message))
    return found


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``espnet-ros`` in a process of its own."""
    return subprocess.run([sys.executable, '-m', 'espnet_ros.cli', *args], capture_output=True,
                          text=True, timeout=timeout)


class InterruptedRun(NamedTuple):
    """A bag command stopped by a signal: its input and output bags, status and output."""

    source: Path
    out: Path
    status: int
    stdout: str
    stderr: str


def interrupted_bag_run(tmp_path: Path, frames: list[np.ndarray],
                        signum: signal.Signals) -> InterruptedRun:
    """
    Segment a long bag of ``frames`` in a process of its own; send ``signum`` mid-run.

    The signal goes once the progress bar shows a first frame done; the bag holds
    INTERRUPTED_BAG_FRAMES frames, long enough that the signal lands mid-run.
    """
    source = write_bag(tmp_path / 'in', [raw_image(i, frames[i % len(frames)])
                                         for i in range(INTERRUPTED_BAG_FRAMES)], chatter=False)
    out = tmp_path / 'out'
    process = subprocess.Popen(
        [sys.executable, '-m', 'espnet_ros.cli', 'bag', str(source), '--image-topic', TOPIC,
         '--out', str(out), *ENGINE_ARGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, 'PYTHONUNBUFFERED': '1'})
    started = re.compile(rf'\b[1-9]\d*/{INTERRUPTED_BAG_FRAMES}\b')
    try:
        progress = ''
        deadline = time.monotonic() + INTERRUPTED_RUN_TIMEOUT_S
        while not started.search(progress):  # tqdm shows a first frame done
            assert time.monotonic() < deadline and process.poll() is None, progress
            progress += process.stderr.read(1)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=INTERRUPTED_RUN_TIMEOUT_S)
    finally:
        process.kill()
    return InterruptedRun(source, out, process.returncode, stdout, stderr)


@pytest.fixture(scope='module')
def engine() -> SegmentationEngine:
    """Return the engine the command builds from ENGINE_ARGS (same defaults)."""
    return SegmentationEngine.from_pretrained(MODEL, input_size=SIZE, device='cpu',
                                              precision=DEFAULT_PRECISION, backend=Backend.AUTO)


@pytest.fixture(scope='module')
def frames(camvid_dir: Path) -> list[np.ndarray]:
    """Return the CamVid frames the bags carry."""
    return camvid_frames(camvid_dir, FRAMES)


def labels_of(engine: SegmentationEngine, message: Any) -> np.ndarray:
    """Return the engine's labels for a camera message, decoded as the node decodes it."""
    image = decode_message(message)
    return engine.segment(image.pixels, order=image.order).labels


def check_outputs(found: dict, inputs: list[tuple[int, Any]], engine: SegmentationEngine,
                  outputs: tuple[str, ...] = ('labels', 'color', 'overlay')) -> None:
    """Assert one output of each kind per input frame, with its header, time and labels."""
    palette = get_spec(MODEL).dataset.palette
    for output in outputs:
        written = found[f'/cam/segmentation/{output}']
        assert len(written) == len(inputs), output
        for (received, camera), (timestamp, message) in zip(inputs, written):
            assert timestamp == received
            assert message.header.frame_id == camera.header.frame_id
            assert (message.header.stamp.sec, message.header.stamp.nanosec) == (
                camera.header.stamp.sec, camera.header.stamp.nanosec)
            height, width = (camera.height, camera.width) if hasattr(camera, 'height') else (
                decode_message(camera).pixels.shape[:2])
            assert (message.height, message.width) == (height, width)
    for (_, camera), (_, message) in zip(inputs, found['/cam/segmentation/labels']):
        assert message.encoding == 'mono8'
        labels = message.data.reshape(message.height, message.width)
        assert np.array_equal(labels, labels_of(engine, camera))
        if 'color' in outputs:
            color = found['/cam/segmentation/color'][inputs.index((_, camera))][1]
            assert np.array_equal(color.data.reshape(message.height, message.width, 3),
                                  palette[labels])
    (_, classes), = found['/cam/segmentation/classes']
    assert json.loads(classes.data) == class_table(get_spec(MODEL))
    (_, label_info), = found['/cam/segmentation/label_info']
    assert [c.class_name for c in label_info.class_map] == list(
        get_spec(MODEL).dataset.classes)
    # Stamped from when the class table applies (the first frame), in no frame (README).
    first = inputs[0][1].header.stamp
    assert (label_info.header.stamp.sec, label_info.header.stamp.nanosec) == (
        first.sec, first.nanosec)
    assert label_info.header.frame_id == ''


@pytest.mark.parametrize('storage,compressed', [('sqlite3', False), ('mcap', True)])
def test_every_frame_gets_its_labels_header_and_time(
        tmp_path: Path, frames: list[np.ndarray], engine: SegmentationEngine, storage: str,
        compressed: bool) -> None:
    make = compressed_image if compressed else raw_image
    topic = TOPIC + '/compressed' if compressed else TOPIC
    source = write_bag(tmp_path / 'in', [make(i, bgr) for i, bgr in enumerate(frames)],
                       storage=storage, topic=topic)
    result = run_cli('bag', str(source), '--image-topic', topic, '--out',
                     str(tmp_path / 'out'), *ENGINE_ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'{FRAMES} frames read, {FRAMES} segmented, 0 malformed' in result.stdout
    assert 'frames/s' in result.stdout
    assert any((tmp_path / 'out').glob('*.mcap' if storage == 'mcap' else '*.db3'))
    found = read_bag(tmp_path / 'out')
    inputs = read_bag(source)[topic]
    check_outputs(found, inputs, engine)
    # The input topics are copied as they were.
    assert [m.data for _, m in found['/chatter']] == [f'hello {i}' for i in range(FRAMES)]
    assert [t for t, _ in found[topic]] == [t for t, _ in inputs]
    with Reader(tmp_path / 'out') as reader:
        info = {c.topic: c for c in reader.connections}
        assert info['/cam/segmentation/label_info'].digest == LABEL_INFO_RIHS01
        qos = info['/cam/segmentation/classes'].ext.offered_qos_profiles[0]
        assert qos.durability.name == 'TRANSIENT_LOCAL'


def test_only_outputs_in_a_window_to_another_storage(
        tmp_path: Path, frames: list[np.ndarray], engine: SegmentationEngine) -> None:
    source = write_bag(tmp_path / 'in', [raw_image(i, bgr) for i, bgr in enumerate(frames)])
    out = tmp_path / 'out'
    assert cli_main(['bag', str(source), '--image-topic', TOPIC, '--out', str(out),
                     '--only-outputs', '--start', '1', '--end', '3', '--storage', 'mcap',
                     '--outputs', 'labels,confidence', '--batch', '2', *ENGINE_ARGS]) == 0
    found = read_bag(out)
    assert sorted(found) == sorted(f'/cam/segmentation/{name}' for name in (
        'labels', 'confidence', 'classes', 'label_info'))
    inputs = read_bag(source)[TOPIC][1:3]  # received at 1 s and 2 s after the start
    check_outputs(found, inputs, engine, outputs=('labels', 'confidence'))
    confidence = found['/cam/segmentation/confidence'][0][1]
    assert confidence.encoding == '32FC1'
    values = np.frombuffer(confidence.data, '<f4')
    assert values.size == confidence.width * confidence.height
    assert 0.0 < values.min() <= values.max() <= 1.0
    assert any(out.glob('*.mcap'))


@pytest.mark.parametrize('flag', [[], ['--no-progress']])
def test_no_progress_shows_no_bar_and_keeps_the_summary(
        tmp_path: Path, frames: list[np.ndarray], engine: SegmentationEngine, capsys,
        flag: list[str]) -> None:
    source = write_bag(tmp_path / 'in', [raw_image(0, frames[0])])
    assert cli_main(['bag', str(source), '--image-topic', TOPIC, '--out',
                     str(tmp_path / 'out'), *flag, *ENGINE_ARGS]) == 0
    printed = capsys.readouterr()
    assert '1 frames read, 1 segmented' in printed.out
    assert ('bag (' in printed.err) == (not flag), printed.err


def test_malformed_frames_are_counted_and_skipped(
        tmp_path: Path, frames: list[np.ndarray], engine: SegmentationEngine, capsys) -> None:
    bgr = frames[0]
    good = [raw_image(0, bgr), raw_image(3, frames[1])]
    bad = [raw_image(1, bgr, data=bgr.reshape(-1)[:-5]),
           raw_image(2, bgr, encoding='32FC1')]
    source = write_bag(tmp_path / 'in', [good[0], *bad, good[1]])
    assert cli_main(['bag', str(source), '--image-topic', TOPIC, '--out',
                     str(tmp_path / 'out'), *ENGINE_ARGS]) == 0
    printed = capsys.readouterr().out
    assert '4 frames read, 2 segmented, 2 malformed' in printed
    assert 'expected step*height' in printed and "'32FC1'" in printed
    found = read_bag(tmp_path / 'out')
    inputs = read_bag(source)[TOPIC]
    check_outputs(found, [inputs[0], inputs[3]], engine)
    assert len(found[TOPIC]) == 4  # malformed frames are still copied


def test_ctrl_c_leaves_a_valid_bag_and_says_how_far(tmp_path: Path, camvid_dir: Path) -> None:
    run = interrupted_bag_run(tmp_path, camvid_frames(camvid_dir, 40), signal.SIGINT)
    assert run.status == 130, run.stderr[-3000:]
    assert 'interrupted after' in run.stdout and 'Traceback' not in run.stderr
    done = int(run.stdout.split('interrupted after ')[1].split()[0])
    assert 1 <= done < INTERRUPTED_BAG_FRAMES
    found = read_bag(run.out)
    assert len(found['/cam/segmentation/labels']) == len(found[TOPIC]) == done


def test_an_existing_output_needs_force(tmp_path: Path, frames: list[np.ndarray]) -> None:
    source = write_bag(tmp_path / 'in', [raw_image(0, frames[0])])
    out = tmp_path / 'out'
    shutil.copytree(source, out)
    args = ['bag', str(source), '--image-topic', TOPIC, '--out', str(out), *ENGINE_ARGS]
    result = run_cli(*args)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert result.stderr.strip() == f'espnet-ros bag: error: {out} exists; pass --force to ' \
                                    'replace it'
    assert cli_main([*args, '--force']) == 0
    assert '/cam/segmentation/labels' in read_bag(out)
    (tmp_path / 'folder').mkdir()
    (tmp_path / 'folder' / 'precious.txt').write_text('keep me')
    assert cli_main(['bag', str(source), '--image-topic', TOPIC, '--out',
                     str(tmp_path / 'folder'), '--force', *ENGINE_ARGS]) == 2
    assert (tmp_path / 'folder' / 'precious.txt').exists()


def bad_bags(tmp_path: Path, frames: list[np.ndarray]) -> list[tuple[Path, str, str]]:
    """Return (bag, topic, what the one-line error must say) for each kind of bad input."""
    good = write_bag(tmp_path / 'good', [raw_image(i, bgr) for i, bgr in enumerate(frames)],
                     storage='mcap')
    cases = []
    text = tmp_path / 'notes.db3'
    text.write_text('not a database')
    cases.append((text, TOPIC, 'cannot be read as a rosbag2 bag'))
    (tmp_path / 'plain').mkdir()
    cases.append((tmp_path / 'plain', TOPIC, 'no metadata.yaml'))
    cases.append((tmp_path / 'missing', TOPIC, 'does not exist'))
    truncated = tmp_path / 'truncated'
    shutil.copytree(good, truncated)
    mcap, = truncated.glob('*.mcap')
    mcap.write_bytes(mcap.read_bytes()[:mcap.stat().st_size // 2])
    cases.append((truncated, TOPIC, 'truncated'))
    cases.append((good, '/front/image_raw', f'image topics: {TOPIC}'))
    cases.append((good, '/chatter', 'holds std_msgs/msg/String'))
    cases.append((write_bag(tmp_path / 'empty', []), TOPIC, 'empty bag'))
    return cases


def test_each_bad_input_gives_one_clear_line(tmp_path: Path, frames: list[np.ndarray],
                                             capsys) -> None:
    for source, topic, expected in bad_bags(tmp_path, frames[:2]):
        out = tmp_path / f'out_{source.name}'
        status = cli_main(['bag', str(source), '--image-topic', topic, '--out', str(out),
                           *ENGINE_ARGS])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2, (source, err)
        assert len(err) == 1 and err[0].startswith('espnet-ros bag: error: '), err
        assert expected in err[0], err
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    status = cli_main(['bag', str(tmp_path / 'good'), '--image-topic', TOPIC, '--out',
                       str(blocker / 'out'), *ENGINE_ARGS])
    err = capsys.readouterr().err.strip()
    assert status == 2 and 'cannot write the output bag' in err, err


def test_points_need_a_depth_topic(tmp_path: Path, frames: list[np.ndarray], capsys) -> None:
    source = write_bag(tmp_path / 'in', [raw_image(0, frames[0])])
    assert cli_main(['bag', str(source), '--image-topic', TOPIC, '--out',
                     str(tmp_path / 'out'), '--outputs', 'labels,points']) == 2
    assert "output 'points' needs a depth input: pass --depth-topic" in capsys.readouterr().err
    assert cli_main(['bag', str(source), '--image-topic', TOPIC, '--out',
                     str(tmp_path / 'out'), '--depth-topic', '/chatter']) == 2
    assert 'depth topic /chatter holds std_msgs/msg/String' in capsys.readouterr().err
    assert cli_main(['bag', str(source), '--image-topic', TOPIC, '--out',
                     str(tmp_path / 'out'), '--depth-topic', TOPIC]) == 2
    assert ('depth camera info topic /cam/camera_info is not a sensor_msgs/msg/CameraInfo '
            'topic') in capsys.readouterr().err
    assert cli_main(['bag', str(source), '--image-topic', TOPIC, '--out',
                     str(tmp_path / 'out'), '--min-depth', '5', '--max-depth', '1']) == 2
    assert 'min depth < max depth; got 5.0 and 1.0' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_a_full_disk_stops_with_a_valid_bag(tmp_path: Path, frames: list[np.ndarray],
                                            engine: SegmentationEngine) -> None:
    """Less free space than the run keeps for closing: a clear error and a readable bag."""
    source = write_bag(tmp_path / 'in', [raw_image(i, bgr) for i, bgr in enumerate(frames)])
    out = tmp_path / 'out'
    job = BagJob(source=source, image_topic=TOPIC, out=out,
                 min_free_bytes=shutil.disk_usage(tmp_path).free + (1 << 30))
    segmentation = BagSegmentation(job)
    with pytest.raises(OfflineError, match='not enough disk space .* stopped after 0 frames; '
                                           'what was written before is a valid bag'):
        segmentation.run(engine)
    found = read_bag(out)
    assert '/cam/segmentation/labels' not in found
    assert TOPIC not in found, 'copying the input counts against the free space too'


def test_camera_info_is_rescaled_to_the_labels(tmp_path: Path, frames: list[np.ndarray]
                                               ) -> None:
    """The bag's /cam/camera_info comes out as the node's segmentation/camera_info."""
    source = tmp_path / 'in'
    info_type = 'sensor_msgs/msg/CameraInfo'
    height, width = frames[0].shape[:2]
    k = [400.0, 0.0, 240.0, 0.0, 400.0, 180.0, 0.0, 0.0, 1.0]
    p = [400.0, 0.0, 240.0, 0.0, 0.0, 400.0, 180.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info = STORE.types[info_type](
        header=header(0), height=height, width=width, distortion_model='plumb_bob',
        d=np.zeros(5), k=np.array(k), r=np.eye(3).reshape(-1), p=np.array(p), binning_x=0,
        binning_y=0, roi=STORE.types['sensor_msgs/msg/RegionOfInterest'](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    with Writer(source, version=8) as writer:
        images = writer.add_connection(TOPIC, 'sensor_msgs/msg/Image', typestore=STORE)
        infos = writer.add_connection('/cam/camera_info', info_type, typestore=STORE)
        for index, bgr in enumerate(frames[:2]):
            received = FIRST_RECEIVED_NS + index * 10 ** 9
            writer.write(infos, received - 1, STORE.serialize_cdr(info, info_type))
            writer.write(images, received, STORE.serialize_cdr(raw_image(index, bgr),
                                                               'sensor_msgs/msg/Image'))
    assert cli_main(['bag', str(source), '--image-topic', TOPIC, '--out', str(tmp_path / 'out'),
                     '--only-outputs', '--outputs', 'labels', '--output-resolution', 'network',
                     *ENGINE_ARGS]) == 0
    found = read_bag(tmp_path / 'out')
    labels = found['/cam/segmentation/labels']
    written = found['/cam/segmentation/camera_info']
    assert [t for t, _ in written] == [t for t, _ in labels] and len(written) == 2
    scale_x, scale_y = SIZE[0] / width, SIZE[1] / height
    for (_, label), (_, camera_info) in zip(labels, written):
        assert (camera_info.width, camera_info.height) == (label.width, label.height) == SIZE
        assert camera_info.header.frame_id == label.header.frame_id
        expected = [400 * scale_x, 240 * scale_x, 400 * scale_y, 180 * scale_y]
        assert np.allclose(camera_info.k[[0, 2, 4, 5]], expected)
    assert '/cam/camera_info' not in found and TOPIC not in found  # --only-outputs


DEPTH_TOPIC = '/cam/depth/image_rect_raw'
DEPTH_INFO_TOPIC = '/cam/depth/camera_info'  # the sibling camera_info: found by default
CAMERA_HEIGHT_M, FACADE_M = 1.5, 8.0
DECOY_FACADE_M = 6.0  # the depth image that must not be chosen sees another world
MS = 10 ** 6
# Frame index: its depth images as (stamp offset from the colour stamp, recorded after the
# colour frame, facade distance). Frame 1 has two within the node's 20 ms slop: the nearer
# stamp wins although it was recorded after the frame. Frame 2 has no depth image and frame
# 3's is beyond the slop: no cloud.
DEPTH_OF_FRAME = {0: [(0, False, FACADE_M)],
                  1: [(-15 * MS, False, DECOY_FACADE_M), (5 * MS, True, FACADE_M)],
                  3: [(50 * MS, False, FACADE_M)]}
POINT_FIELD_DTYPES = {7: '<f4', 6: '<u4'}  # sensor_msgs/PointField FLOAT32, UINT32


def depth_message(index: int, metres: np.ndarray, offset_ns: int) -> Any:
    """Return the 16UC1 depth image (millimetres) of frame ``index``, stamped ``offset_ns`` on."""
    stamp = header(index).stamp
    total = stamp.sec * 10 ** 9 + stamp.nanosec + offset_ns
    millimetres = np.rint(metres * 1000).astype('<u2')
    return STORE.types['sensor_msgs/msg/Image'](
        header=STORE.types['std_msgs/msg/Header'](
            stamp=STORE.types['builtin_interfaces/msg/Time'](
                sec=total // 10 ** 9, nanosec=total % 10 ** 9),
            frame_id=header(index).frame_id),  # registered to the colour camera
        height=metres.shape[0], width=metres.shape[1], encoding='16UC1', is_bigendian=0,
        step=metres.shape[1] * 2, data=millimetres.view(np.uint8).reshape(-1))


def cloud_points(message: Any) -> np.ndarray:
    """Return a PointCloud2's points as a structured H x W array, read from its fields."""
    dtype = np.dtype({'names': [f.name for f in message.fields],
                      'formats': [POINT_FIELD_DTYPES[f.datatype] for f in message.fields],
                      'offsets': [f.offset for f in message.fields],
                      'itemsize': message.point_step})
    return np.frombuffer(message.data.tobytes(), dtype).reshape(message.height, message.width)


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_a_depth_topic_adds_clouds_paired_by_stamp(tmp_path: Path, frames: list[np.ndarray],
                                                   storage: str) -> None:
    """Colour, depth and CameraInfo in, segmentation/points out, as the node pairs them."""
    height, width = frames[0].shape[:2]
    k = pinhole_k((width, height), horizontal_fov_deg=90.0)
    metres = flat_world((width, height), k, CAMERA_HEIGHT_M, FACADE_M)
    worlds = {facade: flat_world((width, height), k, CAMERA_HEIGHT_M, facade)
              for facade in (FACADE_M, DECOY_FACADE_M)}
    info_type, image_type = 'sensor_msgs/msg/CameraInfo', 'sensor_msgs/msg/Image'
    info = STORE.types[info_type](
        header=header(0), height=height, width=width, distortion_model='plumb_bob',
        d=np.zeros(5), k=k.reshape(-1), r=np.eye(3).reshape(-1),
        p=np.hstack([k, np.zeros((3, 1))]).reshape(-1), binning_x=0, binning_y=0,
        roi=STORE.types['sensor_msgs/msg/RegionOfInterest'](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    source = tmp_path / 'in'
    with Writer(source, version=8, storage_plugin=StoragePlugin[storage.upper()]) as writer:
        images = writer.add_connection(TOPIC, image_type, typestore=STORE)
        depths = writer.add_connection(DEPTH_TOPIC, image_type, typestore=STORE)
        infos = writer.add_connection(DEPTH_INFO_TOPIC, info_type, typestore=STORE)
        for index, bgr in enumerate(frames):
            received = FIRST_RECEIVED_NS + index * 10 ** 9
            writer.write(infos, received - 2, STORE.serialize_cdr(info, info_type))
            writer.write(images, received, STORE.serialize_cdr(raw_image(index, bgr),
                                                               image_type))
            for offset, after, facade in DEPTH_OF_FRAME.get(index, []):
                writer.write(depths, received + (1 if after else -1), STORE.serialize_cdr(
                    depth_message(index, worlds[facade], offset), image_type))
    out = tmp_path / 'out'
    assert cli_main(['bag', str(source), '--image-topic', TOPIC, '--out', str(out),
                     '--depth-topic', DEPTH_TOPIC, *ENGINE_ARGS]) == 0
    found = read_bag(out)
    clouds = found['/cam/segmentation/points']
    labels = dict(found['/cam/segmentation/labels'])
    assert len(clouds) == 2, [t for t, _ in clouds]
    assert '/cam/segmentation/confidence' not in found  # computed for the clouds alone
    assert len(found[DEPTH_TOPIC]) == sum(map(len, DEPTH_OF_FRAME.values()))  # still copied
    for (received, cloud), index in zip(clouds, (0, 1)):
        assert received == FIRST_RECEIVED_NS + index * 10 ** 9  # the colour frame's time
        assert (cloud.header.stamp.sec, cloud.header.stamp.nanosec) == (100 + index, 7 * index)
        assert cloud.header.frame_id == header(index).frame_id
        points = cloud_points(cloud)
        assert points.shape == (height, width)
        assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'rgb', 'label', 'confidence']
        label_image = labels[received]
        np.testing.assert_array_equal(
            points['label'], np.frombuffer(label_image.data.tobytes(), np.uint8).reshape(
                height, width))
        for v, u in ((height - 1, 7), (height // 4, width // 2), (height * 3 // 4, width - 3),
                     (0, 0)):
            z = np.rint(metres[v, u] * 1000) / 1000  # as recorded, in millimetres
            expected = ((u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z)
            point = points[v, u]
            assert np.allclose((point['x'], point['y'], point['z']), expected, atol=1e-4), (
                v, u, point, expected)
        recorded = np.rint(metres * 1000) / 1000
        max_depth = CloudSettings().max_depth
        clear = np.abs(recorded - max_depth) > 0.01  # away from the limit's rounding
        np.testing.assert_array_equal(np.isnan(points['z'])[clear],
                                      (recorded > max_depth)[clear])
