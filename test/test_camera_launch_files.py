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

"""``segment.launch.py cameras:=[front,rear]`` from a colcon install, over real DDS."""

from pathlib import Path
from typing import Iterator

from launch_helpers import (interrupt, kill_leftovers, launch_env, leftovers, new_marker,
                            require_launch, run_launch, start_launch)
import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from ros_helpers import camera_image, header_at, Probe, START_TIMEOUT_S
from sensor_msgs.msg import Image

require_launch()

SMALL_MODEL = ('model:=espnet_c_p2q3_cityscapes', 'input_width:=256', 'input_height:=128',
               'device:=cpu', 'precision:=fp32', 'compile_mode:=eager', 'threads:=1')
FAIL_TIMEOUT_S = 120.0
LABELS_TIMEOUT_S = 240.0
SEND_PERIOD_S = 0.5
# Each camera's (width, height): they differ, and so must their labels.
CAMERAS = {'front': (320, 240), 'rear': (160, 120)}


@pytest.fixture
def marker() -> Iterator[str]:
    """Return a marker for this test's launch; kill whatever carries it afterwards."""
    mark = new_marker()
    yield mark
    kill_leftovers(mark)


@pytest.mark.parametrize('launch_file, arguments, message', [
    ('segment.launch.py', ['cameras:=[front,front]'], "'front' is named twice"),
    ('segment.launch.py', ['cameras:=[front,/rear]'], 'must be relative'),
    ('segment.launch.py', ['cameras:=[front,rear]', 'image:=/cam/image_raw'],
     'image:= applies to the single camera'),
    ('demo.launch.py', ['cameras:=[front,rear]'], 'the demo plays one camera'),
])
def test_bad_cameras_stop_the_launch_before_anything_starts(
        colcon_install: Path, marker: str, launch_file: str, arguments: list,
        message: str) -> None:
    result = run_launch(colcon_install, ['espnet_ros', launch_file, *arguments],
                        launch_env(marker, None), FAIL_TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and message in output, output
    assert 'process started' not in output, output
    assert not leftovers(marker)


def test_two_cameras_in_a_namespace_each_labelled_at_its_size(
        colcon_install: Path, weights_dir: Path, probe: Probe, marker: str,
        tmp_path: Path) -> None:
    log = tmp_path / 'launch.log'
    launch = start_launch(colcon_install, ['espnet_ros', 'segment.launch.py', *SMALL_MODEL,
                                           'namespace:=robot', 'cameras:=[front,rear]'],
                          launch_env(marker, weights_dir), log)
    publishers = {name: probe.node.create_publisher(Image, f'/robot/{name}/image',
                                                    qos_profile_sensor_data)
                  for name in CAMERAS}
    labels = {name: probe.record(Image, f'/robot/{name}/segmentation/labels')
              for name in CAMERAS}

    def send() -> None:
        for name, (width, height) in CAMERAS.items():
            rgb = np.full((height, width, 3), 90, np.uint8)
            publishers[name].publish(camera_image(rgb, 'rgb8', header_at(
                probe.node.get_clock().now().nanoseconds, f'{name}_link')))

    try:
        probe.spin_until(lambda: all(probe.node.count_subscribers(f'/robot/{name}/image')
                                     for name in CAMERAS) or launch.poll() is not None,
                         START_TIMEOUT_S, 'the segmenter to subscribe to both cameras')
        timer = probe.node.create_timer(SEND_PERIOD_S, send)
        try:
            probe.spin_until(lambda: all(recorder.messages for recorder in labels.values())
                             or launch.poll() is not None, LABELS_TIMEOUT_S,
                             'labels of both cameras')
        finally:
            probe.node.destroy_timer(timer)
        assert launch.poll() is None, log.read_text()
    finally:
        probe.forget(labels.values())
        status = interrupt(launch)
    assert status == 0, log.read_text()
    assert not leftovers(marker)
    for name, (width, height) in CAMERAS.items():
        message = labels[name].messages[-1][1]
        assert (message.width, message.height) == (width, height)
        assert message.header.frame_id == f'{name}_link'
