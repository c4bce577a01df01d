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
The segmenter's start-up and configuration, each case a node process of its own.

Start-up failures must end the process with status 1 and a message that says what to fix
(the file and what was expected), never a traceback; device auto without CUDA and an
unverified checkpoint that is allowed run, with a warning each.
"""

from pathlib import Path
import shutil
import signal
import subprocess
from typing import Iterator

import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from readme_node import NODE_PARAMETERS
from ros_helpers import (no_traceback, NodeProcess, Probe, send_until_answered, sender,
                         SMALL_NODE, START_TIMEOUT_S)
from sensor_msgs.msg import Image
import torch

from espnet_ros.zoo.checkpoints import read_state_dict
from espnet_ros.zoo.registry import get_spec, registry

BASE = SMALL_NODE
MODEL = BASE['model']


def checkpoint_copy(weights_dir: Path, into: Path, model: str = MODEL) -> Path:
    """Copy ``model``'s official checkpoint into ``into``; return the copy."""
    target = into / Path(get_spec(model).checkpoint).name
    shutil.copyfile(weights_dir / get_spec(model).checkpoint, target)
    return target


def truncated(weights_dir: Path, into: Path) -> Path:
    """Return a copy of the checkpoint cut to half its size."""
    path = checkpoint_copy(weights_dir, into)
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])
    return path


def retrained(weights_dir: Path, into: Path) -> Path:
    """Return the checkpoint with every tensor nudged, as fine-tuning would leave it."""
    state = read_state_dict(weights_dir / get_spec(MODEL).checkpoint)
    path = into / 'retrained.pth'
    torch.save({key: value * 1.01 if value.is_floating_point() else value
                for key, value in state.items()}, path)
    return path


SHA = get_spec(MODEL).sha256


# id: (parameters given the weights and a files folder, what the log must say; {files} is
# that folder)
START_FAILURES = {
    'unknown model': (lambda w, t: {'model': 'espnet_p9q9_cityscapes'},
                      ["unknown model 'espnet_p9q9_cityscapes'", 'known models:',
                       *registry()]),
    'truncated checkpoint': (lambda w, t: {'weights': str(truncated(w, t))},
                             [f'expected {SHA}', 'truncated', '{files}']),
    'checkpoint of another model': (
        lambda w, t: {'weights': str(checkpoint_copy(w, t, 'espnet_p2q5_cityscapes'))},
        [f'expected {SHA}', '{files}']),
    'wrong architecture, unverified allowed': (
        lambda w, t: {'weights': str(checkpoint_copy(w, t, 'espnet_p2q5_cityscapes')),
                      'allow_unverified_weights': True},
        [f'does not fit model {MODEL}', '{files}']),
    # The node is given an empty models folder: it says how to fetch, and downloads nothing.
    'checkpoint not installed': (lambda w, t: {},
                                 ['not found in', f'expected sha256 {SHA}', 'espnet-ros fetch']),
    'cuda without CUDA': (lambda w, t: {'device': 'cuda'}, ['CUDA is not available']),
    'overlay_alpha out of range': (lambda w, t: {'overlay_alpha': 2.0},
                                   ['overlay_alpha', '2.0']),
    'input_width not an integer': (lambda w, t: {'input_width': 'wide'},
                                   ['input_width', 'wide']),
    'unknown output_resolution': (lambda w, t: {'output_resolution': 'sideways'},
                                  ['output_resolution', 'sideways', 'input, network']),
    'unknown reliability': (lambda w, t: {'reliability': 'sometimes'},
                            ['reliability', 'sometimes', 'best_effort, reliable']),
}


@pytest.fixture(scope='module')
def failed_starts(weights_dir: Path,
                  tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[dict[str, tuple[NodeProcess, Path]]]:
    """Start every bad configuration at once (they are independent); yield them by case."""
    nodes = {}
    for index, (name, (parameters, _)) in enumerate(START_FAILURES.items()):
        files = tmp_path_factory.mktemp('start')
        models = files if name == 'checkpoint not installed' else weights_dir
        nodes[name] = NodeProcess('segmenter', {**BASE, **parameters(weights_dir, files)},
                                  namespace=f'/start{index}', weights_dir=models,
                                  log_dir=files), files
    yield nodes
    for node, _ in nodes.values():
        node.stop()


@pytest.mark.parametrize('case', list(START_FAILURES))
def test_bad_configuration_fails_at_start_up(failed_starts: dict, case: str) -> None:
    """Status 1, a message naming what is wrong and what was expected, no traceback."""
    node, files = failed_starts[case]
    try:
        status = node.process.wait(START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f'{case}: the node did not exit\n{node.describe()}')
    assert status == 1, node.describe()
    for text in START_FAILURES[case][1]:
        text = text.replace('{files}', str(files))
        assert text in node.log(), f'{case}: {text!r} missing\n{node.describe()}'
    no_traceback(node)


def test_auto_device_and_unverified_weights_run_with_warnings(
        probe: Probe, scene: np.ndarray, weights_dir: Path, tmp_path: Path) -> None:
    """With device auto the CPU is used; an unverified checkpoint loads if allowed; both warn."""
    weights = retrained(weights_dir, tmp_path)
    node = NodeProcess('segmenter', {**BASE, 'device': 'auto', 'weights': str(weights),
                                     'allow_unverified_weights': True},
                       namespace='/unverified', weights_dir=weights_dir, log_dir=tmp_path)
    probe.watched.append(node)
    camera = probe.node.create_publisher(Image, '/unverified/image', qos_profile_sensor_data)
    labels = probe.record(Image, '/unverified/segmentation/labels')
    try:
        probe.spin_until(camera.get_subscription_count, START_TIMEOUT_S, 'the node to start')
        send_until_answered(probe, sender(camera, scene), {'labels': labels})
    finally:
        probe.watched.remove(node)
        probe.forget([labels])
        probe.node.destroy_publisher(camera)
        status = node.stop()
    assert status == 0, node.describe()
    log = node.log()
    assert 'CUDA is not available, running on the CPU' in log, log
    assert str(weights) in log and 'allow_unverified' in log, log
    no_traceback(node)


def test_autostart_failure_exits_with_status_1(weights_dir: Path, tmp_path: Path) -> None:
    """A model that cannot be configured at start-up ends the process with status 1."""
    node = NodeProcess('segmenter', {**NODE_PARAMETERS, 'input_width': 300}, namespace='/bad',
                       weights_dir=weights_dir, log_dir=tmp_path)
    try:
        status = node.process.wait(START_TIMEOUT_S)
    finally:
        node.stop()
    assert status == 1, node.describe()
    assert 'cannot configure' in node.log() and 'multiples of 8' in node.log(), node.log()


def test_a_crash_leaves_every_thread_s_stack_in_the_log(probe: Probe, weights_dir: Path,
                                                        tmp_path: Path) -> None:
    """A fatal signal, as native code raises it (sent here by hand), names where it struck."""
    node = NodeProcess('segmenter', BASE, namespace='/crash', weights_dir=weights_dir,
                       log_dir=tmp_path)
    try:
        # Answered only once the node serves: its executor answers the service. Its image
        # subscription comes earlier, while the main thread may still be activating it.
        assert probe.lifecycle_state('/crash/segmenter') == 'active'
        node.process.send_signal(signal.SIGSEGV)
        status = node.process.wait(START_TIMEOUT_S)
    finally:
        node.stop()
    assert status == -signal.SIGSEGV, node.describe()
    log = node.log()
    assert 'Fatal Python error: Segmentation fault' in log, node.describe()
    assert 'espnet_ros/ros/segmenter.py' in log and 'in serve' in log, node.describe()
