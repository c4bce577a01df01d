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
The launch files run by the real ``ros2 launch``, from the colcon install, as users run them.

A bad argument ends the launch before anything starts; a node that dies ends it non-zero,
saying why; frames go in and labels come out on the namespaced topics; ``-s`` shows each
argument once. After every test, nothing the launch started is left in the process table.
"""

import os
from pathlib import Path
import re
import shutil
import stat
import subprocess
from typing import Iterator

import cv2
from launch_helpers import (executable, interrupt, kill_leftovers, launch_env, leftovers,
                            new_marker, require_launch, run_launch, sourced, start_launch)
import numpy as np
import pytest
from ros_helpers import camera_image, header_at, Probe, START_TIMEOUT_S
from sensor_msgs.msg import CameraInfo, Image

from espnet_ros.ros.parameter_table import PARAMETERS

require_launch()

LAUNCH_TESTS = Path(__file__).resolve().parent / 'launch_tests'
USER_BASE = 'espnet_c_p2q3_cityscapes'
SMALL_MODEL = (f'model:={USER_BASE}', 'input_width:=256', 'input_height:=128',
               'device:=cpu', 'precision:=fp32')
FAIL_TIMEOUT_S = 120.0
LABELS_TIMEOUT_S = 240.0
SEND_PERIOD_S = 0.5
CAMERA_SIZE = (320, 240)


@pytest.fixture
def marker() -> Iterator[str]:
    """Return a marker for this test's launch; kill whatever carries it afterwards."""
    mark = new_marker()
    yield mark
    kill_leftovers(mark)


@pytest.fixture(scope='module')
def frames_dir(camvid_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a folder with two CamVid frames, the demo's source."""
    folder = tmp_path_factory.mktemp('frames')
    for path in sorted((camvid_dir / 'val').glob('*.png'))[:2]:
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope='module')
def fake_rviz_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """
    Return an ament prefix with a stand-in rviz2 that records how it was started.

    rviz2 is a GUI that this machine does not have; the stand-in is found the way launch_ros
    finds the real one (ament index, lib/rviz2/rviz2) and writes its command line to a file.
    """
    prefix = tmp_path_factory.mktemp('rviz_prefix')
    (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages').mkdir(parents=True)
    (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'rviz2').touch()
    (prefix / 'share' / 'rviz2').mkdir()
    executable = prefix / 'lib' / 'rviz2' / 'rviz2'
    executable.parent.mkdir(parents=True)
    executable.write_text('#!/bin/sh\n'
                          f'echo "$@" > {prefix}/command_line\n'
                          'trap "exit 0" INT TERM\n'
                          'while :; do sleep 0.1; done\n')
    executable.chmod(executable.stat().st_mode | stat.S_IEXEC)
    return prefix


def rviz2_installed(env: dict[str, str]) -> bool:
    """Tell whether the environment's ament prefixes hold rviz2."""
    return any((Path(prefix) / 'share' / 'ament_index' / 'resource_index' / 'packages' /
                'rviz2').is_file()
               for prefix in env.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if prefix)


def assert_nothing_left(marker: str) -> None:
    """Fail naming every process of the launch still alive."""
    left = leftovers(marker)
    assert not left, 'processes left running after the launch:\n' + '\n'.join(left)


FAILURES = [
    ('segment.launch.py', ['use_rviz:=maybe'], "use_rviz:='maybe' is not true or false"),
    ('segment.launch.py', ['use_rviz:=true'], 'rviz2 is not installed'),
    ('segment.launch.py', ['input_width:=wide'], "input_width:='wide' is not an integer"),
    ('segment.launch.py', ['max_rate:=fast'], "max_rate:='fast' is not a number"),
    ('segment.launch.py', ['precision:=fast'], 'precision must be one of auto, fp32'),
    ('segment.launch.py', ['model:=nosuch'], "unknown model 'nosuch'"),
    ('segment.launch.py', ['params_file:=/nonexistent.yaml'], 'is not a file'),
    ('segment.launch.py', ['model_registry:=/nonexistent'],
     "model_registry: '/nonexistent' is not a folder"),
    ('demo.launch.py', ['use_rviz:=true'], 'rviz2 is not installed'),
    ('demo.launch.py', ['use_rviz:=maybe'], "use_rviz:='maybe' is not true or false"),
    ('demo.launch.py', ['model:=nosuch'], "unknown model 'nosuch'"),
    ('demo.launch.py', ['rate:=often'], "rate:='often' is not a number"),
]


@pytest.mark.parametrize('launch_file, arguments, message', FAILURES,
                         ids=[f'{f}-{" ".join(a)}' for f, a, _ in FAILURES])
def test_bad_argument_stops_before_anything_starts(
        colcon_install: Path, frames_dir: Path, marker: str, launch_file: str,
        arguments: list[str], message: str) -> None:
    """A bad argument ends the launch non-zero with one clear line; no process ever starts."""
    env = launch_env(marker, None)
    if 'use_rviz:=true' in arguments and rviz2_installed(env):
        pytest.skip('rviz2 is installed here')
    if launch_file == 'demo.launch.py':
        arguments = [f'source:={frames_dir}', *arguments]
    result = run_launch(colcon_install, ['espnet_ros', launch_file, *arguments], env,
                        FAIL_TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert message in output, output
    assert 'process started' not in output, output
    assert_nothing_left(marker)


def test_demo_source_must_exist(colcon_install: Path, marker: str) -> None:
    """The demo refuses a source that is not there before it starts anything."""
    result = run_launch(colcon_install,
                        ['espnet_ros', 'demo.launch.py', 'source:=/nonexistent/frames'],
                        launch_env(marker, None), FAIL_TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and 'does not exist' in output, output
    assert 'process started' not in output, output
    assert_nothing_left(marker)


def test_demo_without_sample_frames_names_the_command_that_fetches_them(
        colcon_install: Path, marker: str, tmp_path: Path) -> None:
    """No source:=, no ../shared beside the installed package, nothing fetched: say how."""
    env = launch_env(marker, tmp_path)  # an empty models folder: no samples/ in it
    env.pop('ESPNET_ROS_DATA', None)  # and no sample data folder
    result = run_launch(colcon_install, ['espnet_ros', 'demo.launch.py'], env, FAIL_TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert 'espnet-ros fetch --model espnet_p2q8_cityscapes --samples' in output, output
    assert 'process started' not in output, output
    assert_nothing_left(marker)


@pytest.mark.parametrize('launch_file', ['segment.launch.py', 'demo.launch.py'])
def test_segmenter_dying_at_start_up_ends_the_launch(
        colcon_install: Path, weights_dir: Path, frames_dir: Path, marker: str,
        launch_file: str) -> None:
    """A segmenter that cannot configure ends the launch non-zero, saying why; all stop."""
    # 300 is in the parameter's range, but the network needs multiples of 8: only the node
    # can tell, when it loads the model.
    arguments = ['espnet_ros', launch_file, *SMALL_MODEL, 'input_width:=300']
    if launch_file == 'demo.launch.py':
        arguments.append(f'source:={frames_dir}')
    result = run_launch(colcon_install, arguments, launch_env(marker, weights_dir),
                        START_TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert re.search(r'segmenter-\d+ exited with status 1: .*multiples of 8', output), output
    assert_nothing_left(marker)


def test_show_arguments_gives_one_default_each(colcon_install: Path, marker: str) -> None:
    """``ros2 launch -s`` lists every parameter with its description and one default."""
    result = run_launch(colcon_install, ['espnet_ros', 'segment.launch.py', '-s'],
                        launch_env(marker, None), FAIL_TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    blocks = re.split(r"^\s*'([a-z_]+)':\s*$", result.stdout, flags=re.MULTILINE)[1:]
    shown = dict(zip(blocks[::2], blocks[1::2]))
    for spec in PARAMETERS:
        assert spec.name in shown, f'{spec.name} is not a launch argument:\n{result.stdout}'
        text = shown[spec.name]
        assert text.count('default') == 1 and '(default: the value in params_file)' in text, text
        assert spec.description.split()[0] in text, text
        for choice in spec.choices or ():
            assert choice in text, text
    for name in ('image', 'camera_info', 'namespace', 'params_file', 'use_rviz',
                 'model_registry'):
        assert shown[name].count('(default:') == 1, shown[name]


def send_frames_until_labels(probe: Probe, image_topic: str, info_topic: str,
                             outputs: dict[str, str], launch: object) -> None:
    """Play the camera until every output topic has carried a message."""
    image_pub = probe.node.create_publisher(Image, image_topic, 10)
    info_pub = probe.node.create_publisher(CameraInfo, info_topic, 10)
    recorders = {name: probe.record(Image if name != 'camera_info' else CameraInfo, topic)
                 for name, topic in outputs.items()}
    rgb = np.zeros((CAMERA_SIZE[1], CAMERA_SIZE[0], 3), np.uint8)
    cv2.rectangle(rgb, (0, 120), (320, 240), (128, 64, 128), -1)

    def send() -> None:
        header = header_at(probe.node.get_clock().now().nanoseconds, 'camera')
        image_pub.publish(camera_image(rgb, 'rgb8', header))
        info_pub.publish(CameraInfo(header=header, width=CAMERA_SIZE[0],
                                    height=CAMERA_SIZE[1]))

    timer = probe.node.create_timer(SEND_PERIOD_S, send)
    try:
        probe.spin_until(lambda: all(r.messages for r in recorders.values()) or
                         launch.poll() is not None, LABELS_TIMEOUT_S,
                         f'{sorted(outputs.values())}')
    finally:
        probe.node.destroy_timer(timer)
        probe.forget(recorders.values())
        probe.node.destroy_publisher(image_pub)
        probe.node.destroy_publisher(info_pub)
    assert launch.poll() is None, 'the launch ended early'


def test_segment_launch_namespaced_camera(colcon_install: Path, weights_dir: Path,
                                          probe: Probe, marker: str, tmp_path: Path) -> None:
    """Frames in on the camera's topic; labels out in the namespace; CameraInfo followed."""
    log = tmp_path / 'launch.log'
    arguments = ['espnet_ros', 'segment.launch.py', *SMALL_MODEL, 'namespace:=seg',
                 'image:=/cam/front/image_raw']
    launch = start_launch(colcon_install, arguments, launch_env(marker, weights_dir), log)
    try:
        # segmentation/camera_info comes only from a CameraInfo the node heard: the one beside
        # the image topic, /cam/front/camera_info.
        send_frames_until_labels(probe, '/cam/front/image_raw', '/cam/front/camera_info',
                                 {'labels': '/seg/segmentation/labels',
                                  'camera_info': '/seg/segmentation/camera_info'}, launch)
    finally:
        status = interrupt(launch)
    assert status == 0, log.read_text()
    assert_nothing_left(marker)


def user_model_folder(folder: Path, weights_dir: Path) -> str:
    """Write a user model folder (as espnet-ros train does) holding the small model's weights."""
    from dataclasses import replace

    from espnet_ros.training.classes import from_dataset
    from espnet_ros.training.model_folder import checkpoint_name, register_model, save_state
    from espnet_ros.zoo.registry import get_spec, load

    name = 'launch_user_model'
    base = get_spec(USER_BASE)
    save_state(folder / checkpoint_name(name), load(USER_BASE, weights_dir).state_dict())
    spec = replace(base, name=name, checkpoint=checkpoint_name(name), base=base.name)
    register_model(folder, spec=spec, base=base, table=from_dataset(base.dataset),
                   val_miou={'miou': 0.0, 'protocol': 'ignore-void', 'epoch': 0,
                             'split': 'none (a test copy)'})
    return name


def test_user_model_by_name_through_model_registry(colcon_install: Path, weights_dir: Path,
                                                   probe: Probe, marker: str,
                                                   tmp_path: Path) -> None:
    """model_registry:= makes a user model folder known to the launch checks and the node."""
    folder = tmp_path / 'my_models'
    name = user_model_folder(folder, weights_dir)
    log = tmp_path / 'launch.log'
    arguments = ['espnet_ros', 'segment.launch.py', *SMALL_MODEL[1:], f'model:={name}',
                 f'model_registry:={folder}', 'namespace:=user', 'image:=/user_cam/image']
    launch = start_launch(colcon_install, arguments, launch_env(marker, weights_dir), log)
    try:
        send_frames_until_labels(probe, '/user_cam/image', '/user_cam/camera_info',
                                 {'labels': '/user/segmentation/labels'}, launch)
    finally:
        status = interrupt(launch)
    assert status == 0, log.read_text()
    assert f'model {name} at 256x128' in log.read_text()
    assert_nothing_left(marker)


def test_demo_launch_in_a_namespace(colcon_install: Path, weights_dir: Path, probe: Probe,
                                    frames_dir: Path, marker: str, tmp_path: Path) -> None:
    """The demo's player and segmenter meet in the namespace: labels come out there."""
    log = tmp_path / 'launch.log'
    arguments = ['espnet_ros', 'demo.launch.py', f'source:={frames_dir}', 'namespace:=demo',
                 'rate:=2.0', *SMALL_MODEL]
    launch = start_launch(colcon_install, arguments, launch_env(marker, weights_dir), log)
    labels = probe.record(Image, '/demo/segmentation/labels')
    try:
        probe.spin_until(lambda: labels.messages or launch.poll() is not None,
                         LABELS_TIMEOUT_S, '/demo/segmentation/labels')
        assert launch.poll() is None, log.read_text()
    finally:
        probe.forget([labels])
        status = interrupt(launch)
    assert status == 0, log.read_text()
    assert_nothing_left(marker)


def test_rviz_gets_the_namespace_and_relative_topics(
        colcon_install: Path, weights_dir: Path, fake_rviz_prefix: Path, probe: Probe,
        marker: str, tmp_path: Path) -> None:
    """use_rviz:=true starts rviz2 in the node's namespace with segment.rviz's relative topics."""
    env = launch_env(marker, weights_dir)
    env['AMENT_PREFIX_PATH'] = os.pathsep.join(
        part for part in (str(fake_rviz_prefix), env.get('AMENT_PREFIX_PATH')) if part)
    log = tmp_path / 'launch.log'
    arguments = ['espnet_ros', 'segment.launch.py', *SMALL_MODEL, 'namespace:=viz',
                 'use_rviz:=true']
    launch = start_launch(colcon_install, arguments, env, log)
    command_line = fake_rviz_prefix / 'command_line'
    try:
        probe.spin_until(lambda: command_line.is_file() and command_line.read_text() or
                         launch.poll() is not None, START_TIMEOUT_S, 'rviz2 to start')
        probe.spin_until(lambda: probe.node.count_subscribers('/viz/image') or
                         launch.poll() is not None, START_TIMEOUT_S, 'the segmenter')
        assert launch.poll() is None, log.read_text()
    finally:
        status = interrupt(launch)
    assert status == 0, log.read_text()
    assert_nothing_left(marker)
    words = command_line.read_text().split()
    config = Path(words[words.index('-d') + 1])
    assert config.name == 'segment.rviz' and config.is_file(), words
    assert '__ns:=/viz' in words, words
    topics = re.findall(r'^\s+Value: (\S*segmentation/\S+)$', config.read_text(), re.MULTILINE)
    assert topics and all(not topic.startswith('/') for topic in topics), topics


@pytest.mark.parametrize('launch_test', sorted(LAUNCH_TESTS.glob('*.py')), ids=lambda p: p.stem)
def test_launch_testing(colcon_install: Path, weights_dir: Path, marker: str,
                        launch_test: Path) -> None:
    """The launch_testing tests of test/launch_tests pass under launch_test, install sourced."""
    runner = executable('launch_test')
    result = subprocess.run(sourced(colcon_install, [runner, str(launch_test)]),
                            env=launch_env(marker, weights_dir), capture_output=True, text=True,
                            timeout=2 * START_TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r'Ran [1-9]\d* tests?', output) and 'OK' in output, output
    assert_nothing_left(marker)
