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
The ROS tools a ROS user reaches for first, from the activated shell (issue 25).

``source scripts/activate.sh`` puts the venv on AMENT_PREFIX_PATH, where setup_env.sh
registers the package (share/espnet_ros, lib/espnet_ros): ``ros2 launch espnet_ros
demo.launch.py`` runs with no arguments and nothing built, and the real ros2 verbs
(``topic hz``, ``topic echo``, ``param set``, ``lifecycle get``, ``interface show``) see it.
The plain node takes the camera's CameraInfo beside its remapped image topic.
"""

import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import time
from typing import Iterator

import numpy as np
import pytest
from ros_helpers import (camera_image, child_env, header_at, NodeProcess, Probe, serving,
                         stop)
from sensor_msgs.msg import CameraInfo, Image

from espnet_ros.ros.parameter_table import PARAMETERS

VENV = Path(sys.prefix)
ROS2 = str(VENV / 'bin' / 'ros2')
NAMESPACE = '/tools'
SEGMENTER = f'{NAMESPACE}/segmenter'
# Waits, not figures: safety nets for a heavily loaded machine.
START_TIMEOUT_S, VERB_TIMEOUT_S = 300.0, 120.0
LAUNCH_STOP_TIMEOUT_S = 60.0
SPIN_TIME_S = '10'  # how long a verb without the daemon looks for the node
CAMERA_SIZE = (320, 160)


def activated_env() -> dict[str, str]:
    """Return the environment of ``source scripts/activate.sh`` in this session's DDS."""
    env = child_env(None)
    env['AMENT_PREFIX_PATH'] = os.pathsep.join(
        [str(VENV)] + [p for p in env.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p])
    env['PATH'] = f'{VENV / "bin"}{os.pathsep}{env["PATH"]}'
    return env


def verb(*arguments: str) -> str:
    """Run ``ros2 ARGUMENTS`` as a user would; return its output, failing on an error."""
    result = subprocess.run([ROS2, *arguments], env=activated_env(), capture_output=True,
                            text=True, timeout=VERB_TIMEOUT_S)
    assert result.returncode == 0, f'ros2 {" ".join(arguments)}:\n{result.stdout}{result.stderr}'
    return result.stdout


def output_until(arguments: list[str], pattern: str, log: Path) -> re.Match:
    """Run a ros2 verb that runs until Ctrl-C; return the first match of ``pattern``."""
    with open(log, 'w') as out:
        process = subprocess.Popen([ROS2, *arguments], env=activated_env(), stdout=out,
                                   stderr=subprocess.STDOUT)
    deadline = time.monotonic() + VERB_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            found = re.search(pattern, log.read_text(errors='replace'))
            if found:
                return found
            assert process.poll() is None, log.read_text()
            time.sleep(0.5)
        raise AssertionError(f'no {pattern!r} from ros2 {" ".join(arguments)}:\n'
                             f'{log.read_text()}')
    finally:
        process.send_signal(signal.SIGINT)
        stop(process, 10.0)


def end_launch(launch: subprocess.Popen, log: Path) -> int:
    """
    Press Ctrl-C once on ``launch``; return its exit status.

    A launch still running a minute later is made to print every thread's stack (it runs
    with PYTHONFAULTHANDLER, SIGABRT prints them) before its process group is killed, so
    that the failure says where it hung.
    """
    launch.send_signal(signal.SIGINT)
    try:
        return launch.wait(LAUNCH_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        launch.send_signal(signal.SIGABRT)
        time.sleep(2.0)
        os.killpg(launch.pid, signal.SIGKILL)
        launch.wait()
        raise AssertionError(f'launch did not end on Ctrl-C:\n{log.read_text()}') from None


@pytest.fixture(scope='module')
def demo(weights_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``ros2 launch espnet_ros demo.launch.py`` with no source: the shared sample frames."""
    if not (weights_dir.parent / 'data' / 'camvid' / 'val').is_dir():
        pytest.skip('the sample frames of ../shared/data are not here')
    log = tmp_path_factory.mktemp('demo') / 'launch.log'
    env = {**activated_env(), 'ESPNET_ROS_MODELS': str(weights_dir), 'PYTHONFAULTHANDLER': '1'}
    with open(log, 'w') as out:
        # Its own process group, so that nothing it started outlives a failed test.
        launch = subprocess.Popen(
            [ROS2, 'launch', 'espnet_ros', 'demo.launch.py', f'namespace:={NAMESPACE}',
             'rate:=5.0', 'compile_mode:=eager'], env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield log
    finally:
        status = end_launch(launch, log)
        subprocess.run([ROS2, 'daemon', 'stop'], env=activated_env(), capture_output=True,
                       timeout=VERB_TIMEOUT_S)
    assert status == 0, log.read_text()


def test_demo_runs_as_it_is_and_topic_hz_sees_the_labels(demo: Path, tmp_path: Path) -> None:
    found = output_until(['topic', 'hz', f'{NAMESPACE}/segmentation/labels'],
                         r'average rate: ([\d.]+)', tmp_path / 'hz.log')
    assert float(found.group(1)) > 0
    log = demo.read_text()
    assert 'espnet_p2q8_camvid' in log and 'camvid/val' in log, log


def test_topic_echo_shows_the_class_table(demo: Path) -> None:
    # The type named: without it echo gives up if discovery is slower than its first look
    # (a loaded machine); with it, echo waits for the latched message.
    text = verb('topic', 'echo', '--once', '--qos-durability', 'transient_local',
                '--qos-reliability', 'reliable', f'{NAMESPACE}/segmentation/classes',
                'std_msgs/msg/String')
    assert '"model": "espnet_p2q8_camvid"' in text, text


def test_param_set_and_lifecycle_get(demo: Path) -> None:
    # Typed and best effort, so echo waits for the labels (see the class table test).
    output_until(['topic', 'echo', '--once', '--qos-reliability', 'best_effort',
                  f'{NAMESPACE}/segmentation/labels', 'sensor_msgs/msg/Image',
                  '--field', 'encoding'], r'mono8', demo.parent / 'echo.log')
    text = verb('param', 'set', '--no-daemon', '--spin-time', SPIN_TIME_S, SEGMENTER,
                'max_rate', '2.0')
    assert 'Set parameter successful' in text, text
    assert 'Double value is: 2.0' in verb('param', 'get', '--no-daemon', '--spin-time',
                                          SPIN_TIME_S, SEGMENTER, 'max_rate')
    refused = subprocess.run([ROS2, 'param', 'set', '--no-daemon', '--spin-time', SPIN_TIME_S,
                              SEGMENTER, 'max_rate', '-1.0'], env=activated_env(),
                             capture_output=True, text=True, timeout=VERB_TIMEOUT_S)
    assert 'Setting parameter failed' in refused.stdout + refused.stderr, refused
    assert 'active [3]' in verb('lifecycle', 'get', '--no-daemon', '--spin-time', SPIN_TIME_S,
                                SEGMENTER)


def test_interface_show_finds_the_messages() -> None:
    assert 'VisionClass[] class_map' in verb('interface', 'show', 'vision_msgs/msg/LabelInfo')
    assert 'float64[9]  k' in verb('interface', 'show', 'sensor_msgs/msg/CameraInfo')


def test_demo_show_arguments_lists_every_segment_argument() -> None:
    text = verb('launch', 'espnet_ros', 'demo.launch.py', '-s')
    shown = set(re.findall(r"^\s*'([a-z_]+)':\s*$", text, flags=re.MULTILINE))
    expected = {spec.name for spec in PARAMETERS} | {
        'source', 'rate', 'image', 'camera_info', 'depth_image', 'depth_camera_info',
        'namespace', 'params_file', 'use_rviz', 'model_registry'}
    assert expected <= shown, sorted(expected - shown)


def test_plain_node_takes_the_camera_info_beside_the_remapped_image(
        probe: Probe, weights_dir: Path, tmp_path: Path) -> None:
    """-r image:=/front/image_raw alone: CameraInfo from /front/camera_info, not /camera_info."""
    node = NodeProcess('segmenter', {'model': 'espnet_c_p2q3_cityscapes', 'input_width': 256,
                                     'device': 'cpu', 'precision': 'fp32'},
                       weights_dir=weights_dir, remaps=(('image', '/front/image_raw'),),
                       log_dir=tmp_path)
    image_pub = probe.node.create_publisher(Image, '/front/image_raw', 10)
    info_pub = probe.node.create_publisher(CameraInfo, '/front/camera_info', 10)
    infos = probe.record(CameraInfo, '/segmentation/camera_info')
    rgb = np.zeros((CAMERA_SIZE[1], CAMERA_SIZE[0], 3), np.uint8)
    with serving(probe, node, '/front/image_raw'):
        deadline = time.monotonic() + START_TIMEOUT_S
        while not infos.messages and time.monotonic() < deadline:
            header = header_at(time.time_ns(), 'camera')
            info_pub.publish(CameraInfo(header=header, width=CAMERA_SIZE[0],
                                        height=CAMERA_SIZE[1]))
            image_pub.publish(camera_image(rgb, 'rgb8', header))
            probe.spin_for(1.0)
    probe.forget([infos])
    assert infos.messages, node.log()
    assert 'and /front/camera_info' in node.log()
