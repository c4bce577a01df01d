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
The image_player node, run as its own process, plays files as a camera over DDS.

The frames are three generated images (distinct noise), so each received frame tells which
file it came from and the play order can be checked.
"""

import math
from pathlib import Path
import signal
import statistics
import subprocess
import sys
import time
from typing import Any, Iterator

import cv2
import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from ros_helpers import (image_array, NodeProcess, Probe, Recorder, stamp_ns, START_TIMEOUT_S,
                         WaitTimeout)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

SIZE = (64, 48)  # (width, height)
FILES = 3
QUIET_S = 5.0    # no frame for this long after the last one: the player has stopped


@pytest.fixture(scope='module')
def frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """Write three PNGs (and return the folder and their RGB pixels, in file order)."""
    folder = tmp_path_factory.mktemp('frames')
    rng = np.random.default_rng(7)
    # Smooth noise survives JPEG well enough to tell the three apart.
    images = [cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), SIZE,
                         interpolation=cv2.INTER_LINEAR) for _ in range(FILES)]
    for index, rgb in enumerate(images):
        cv2.imwrite(str(folder / f'frame_{index:02d}.png'), rgb[..., ::-1])
    return folder, images


@pytest.fixture
def start_player(probe: Probe, tmp_path: Path) -> Iterator[Any]:
    """Return ``start(namespace, parameters)``; the players stop after the test."""
    players = []

    def start(namespace: str, parameters: dict[str, Any]) -> NodeProcess:
        player = NodeProcess('image_player', parameters, namespace=namespace,
                             log_dir=tmp_path)
        players.append(player)
        probe.watched.append(player)
        return player

    yield start
    for player in players:
        probe.watched.remove(player)
        status = player.stop()
        assert status == 0, player.describe()


def which_file(pixels: np.ndarray, images: list[np.ndarray], exact: bool) -> int:
    """Return the index of the file a frame shows (exactly, or the nearest for JPEG)."""
    errors = [float(np.abs(pixels.astype(int) - image.astype(int)).mean()) for image in images]
    best = int(np.argmin(errors))
    assert errors[best] == 0 if exact else errors[best] < 6, f'no file matches: {errors}'
    return best


def check_infos(images: Recorder, infos: Recorder, fov_deg: float) -> None:
    """Images and CameraInfo come in pairs with one header, the image size and the FOV."""
    focal = SIZE[0] / (2 * math.tan(math.radians(fov_deg) / 2))
    by_stamp = {stamp_ns(m.header): m for _, m in infos.messages}
    assert by_stamp, 'no CameraInfo arrived'
    image_stamps = [stamp_ns(m.header) for _, m in images.messages]
    # Either subscription may match the new player a moment before the other.
    first, last = max(min(by_stamp), image_stamps[0]), min(max(by_stamp), image_stamps[-1])
    paired = [stamp for stamp in image_stamps if first <= stamp <= last]
    assert paired, 'no image and CameraInfo pair'
    assert sorted(paired) == [stamp for stamp in sorted(by_stamp) if first <= stamp <= last]
    for _, image in images.messages:
        info = by_stamp.get(stamp_ns(image.header))
        if info is not None:
            assert info.header == image.header
            assert (info.width, info.height) == SIZE
            assert np.allclose(info.k, [focal, 0, (SIZE[0] - 1) / 2, 0, focal,
                                        (SIZE[1] - 1) / 2, 0, 0, 1])


def wait_until_stopped(probe: Probe, recorders: list[Recorder]) -> None:
    """Spin until every recorder got frames and none arrived for QUIET_S."""
    def stopped() -> bool:
        if not all(r.messages for r in recorders):
            return False
        last = max(r.messages[-1][0] for r in recorders)
        return time.time_ns() - last > QUIET_S * 1e9
    try:
        probe.spin_until(stopped, START_TIMEOUT_S, 'the players to play and stop')
    except WaitTimeout as error:
        counts = {r.topic: len(r.messages) for r in recorders}
        raise AssertionError(f'frames received: {counts}') from error


def test_plays_folder_in_order_at_rate(probe: Probe, frames: tuple, start_player: Any) -> None:
    """A looping folder plays in file order at the rate, with matching CameraInfo."""
    folder, images = frames
    rate = 20.0
    images_rec = probe.record(Image, '/cam/image', qos_profile_sensor_data)
    infos = probe.record(CameraInfo, '/cam/camera_info', qos_profile_sensor_data)
    start_player('/cam', {'source': str(folder), 'rate': rate, 'frame_id': 'test_cam',
                          'horizontal_fov_deg': 90.0})
    probe.spin_until(lambda: len(images_rec.messages) >= 30, START_TIMEOUT_S, '30 frames')
    probe.spin_for(0.2)  # the CameraInfo of the last frame
    received = list(images_rec.messages)
    for arrival, message in received:
        assert message.header.frame_id == 'test_cam'
        assert message.encoding == 'rgb8' and (message.width, message.height) == SIZE
        assert 0 <= arrival - stamp_ns(message.header) < 1e9, 'stamped when published'
    order = [which_file(image_array(m), images, exact=True) for _, m in received]
    stamps = np.array([stamp_ns(m.header) for _, m in received]) / 1e9
    for i in range(1, len(order)):
        # A tick that ran late can be followed closely by one on time: at least one tick.
        ticks = max(1, round((stamps[i] - stamps[i - 1]) * rate))
        assert (order[i] - order[i - 1]) % FILES == ticks % FILES, f'order {order}'
    period = statistics.median(np.diff(stamps))
    assert abs(period - 1 / rate) < 0.25 / rate, f'median period {period:.4f} s'
    check_infos(images_rec, infos, 90.0)


def test_max_frames_loop_and_transports(probe: Probe, frames: tuple, start_player: Any,
                                        tmp_path: Path) -> None:
    """max_frames stops a looping folder; loop false stops at the end; a video loops."""
    folder, images = frames
    video = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 10.0, SIZE)
    for rgb in images:
        writer.write(np.ascontiguousarray(rgb[..., ::-1]))
    writer.release()
    rate = 1.0
    cases = {  # namespace: (parameters, message type, topic, the whole play order)
        '/looped': ({'source': str(folder), 'max_frames': 5}, Image, 'image', [0, 1, 2, 0, 1]),
        '/once': ({'source': str(folder), 'loop': False, 'transport': 'compressed'},
                  CompressedImage, 'image/compressed', [0, 1, 2]),
        '/video': ({'source': str(video), 'max_frames': 4}, Image, 'image', [0, 1, 2, 0]),
    }
    recorders = {}
    for namespace, (parameters, message_type, topic, _) in cases.items():
        recorders[namespace] = (
            probe.record(message_type, f'{namespace}/{topic}', qos_profile_sensor_data),
            probe.record(CameraInfo, f'{namespace}/camera_info', qos_profile_sensor_data))
        start_player(namespace, {**parameters, 'rate': rate})
    wait_until_stopped(probe, [images for images, _ in recorders.values()])
    for namespace, (_, _, _, whole) in cases.items():
        received, infos = recorders[namespace]
        messages = [m for _, m in received.messages]
        if namespace == '/once':
            assert all(m.format == 'jpeg' for m in messages)
            pixels = [cv2.imdecode(np.frombuffer(m.data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
                      for m in messages]
        else:
            pixels = [image_array(m) for m in messages]
        order = [which_file(p, images, exact=namespace == '/looped') for p in pixels]
        # Frames sent before the probe matched the new publisher are lost (discovery can take
        # two seconds), none later; the last frame and the silence after it show where the
        # player stopped.
        assert order and order == whole[len(whole) - len(order):], (
            f'{namespace} played {order}, expected the end of {whole}')
        stamps = np.array([stamp_ns(m.header) for m in messages]) / 1e9
        # Paced, not sent in a burst: a stalled timer may fire late, never early.
        assert np.all(np.diff(stamps) > 0.5 / rate), np.diff(stamps)
        check_infos(received, infos, 60.0)


def test_waits_for_a_subscriber(probe: Probe, frames: tuple, start_player: Any) -> None:
    """Nothing is played while nobody listens; the first subscriber gets the first file."""
    folder, images = frames
    player = start_player('/waiting', {'source': str(folder), 'rate': 2.0, 'loop': False})
    probe.spin_until(lambda: 'once something subscribes' in player.log(), START_TIMEOUT_S,
                     'the player to start')
    probe.spin_for(2.0)  # four frame periods with nobody subscribed
    assert 'has a subscriber' not in player.log(), player.describe()
    received = probe.record(Image, '/waiting/image', qos_profile_sensor_data)
    wait_until_stopped(probe, [received])
    order = [which_file(image_array(m), images, exact=True) for _, m in received.messages]
    assert order == list(range(FILES)), order
    assert 'has a subscriber: playing' in player.log(), player.describe()


def test_player_does_not_load_pytorch() -> None:
    """The camera stand-in starts and stops quickly: it never imports PyTorch."""
    code = ('import sys\nimport espnet_ros.ros.image_player\n'
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == 'False', done.stdout + done.stderr


@pytest.mark.parametrize('gap_s', [0.0, 0.005, 0.02])
def test_a_second_ctrl_c_during_shutdown_still_ends_cleanly(probe: Probe, frames: tuple,
                                                            tmp_path: Path,
                                                            gap_s: float) -> None:
    """Two SIGINTs (ros2 launch and a terminal both send one): status 0, no traceback."""
    folder, _ = frames
    player = NodeProcess('image_player', {'source': str(folder), 'rate': 50.0,
                                          'wait_for_subscriber': False},
                         namespace='/twice', log_dir=tmp_path)
    try:
        probe.spin_until(lambda: 'subscribed or not' in player.log(), START_TIMEOUT_S,
                         'the player to start')
        player.process.send_signal(signal.SIGINT)
        time.sleep(gap_s)
        player.process.send_signal(signal.SIGINT)
        status = player.process.wait(timeout=START_TIMEOUT_S)
    finally:
        player.stop()
    assert status == 0, player.describe()
    assert 'Traceback' not in player.log(), player.describe()
