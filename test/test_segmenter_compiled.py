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
The node moves from eager to a compiled graph while serving, over real DDS.

A node finds the session's compiled graph (conftest's ``compiled_cache``) through
``$ESPNET_ROS_CACHE``, switches to it between two frames, logs it and says so in its
diagnostics, and goes on labelling frames as the eager network does. A node building a graph
aside takes the builder with it when it ends, by Ctrl-C or killed.
"""

import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import time
from typing import Optional

import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import psutil
from ros_helpers import (camera_image, diagnostic_values, header_at, image_array, NodeProcess,
                         Probe, send_until_answered, serving, START_TIMEOUT_S)
from sensor_msgs.msg import Image

from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.zoo import DEFAULT_MODEL

NAMESPACE = '/compiled'  # of this module's nodes alone
NODE = f'{NAMESPACE}/segmenter'
IMAGE_TOPIC = '/compiled/image_raw'
LABELS_TOPIC = f'{NAMESPACE}/segmentation/labels'
CAMERA_SIZE = (256, 128)
SWITCH_TIMEOUT_S = 120.0
BUILDER_MODULE = 'espnet_ros.runtime.graph_builder'
BUILDER_GONE_TIMEOUT_S = 20.0
ZOMBIE_TIMEOUT_S = 30.0  # a safety net for a python -c 'pass' child, not a speed figure
MIN_AGREEMENT = 0.99  # fp32 or mixed precision against the eager fp32 network


def parameters(compiled_cache, mode: str) -> dict:
    """Return the node's parameters for the session's compiled graph and ``mode``."""
    width, height = compiled_cache.size
    return {'model': DEFAULT_MODEL, 'input_width': width, 'input_height': height,
            'device': 'cpu', 'precision': 'auto', 'threads': compiled_cache.threads,
            'compile_mode': mode, 'publish_color': False, 'publish_overlay': False}


def node_diagnostics(probe: Probe, recorder) -> Optional[dict]:
    """Return the newest diagnostics of the node, if any came."""
    for _, message in reversed(recorder.messages):
        values = diagnostic_values(message, NODE)
        if values is not None:
            return values
    return None


def command_line(process: psutil.Process) -> str:
    """Return the command line of ``process``; '' once it has ended (zombies included)."""
    try:
        return ' '.join(process.cmdline())
    except psutil.NoSuchProcess:  # ZombieProcess too: a short-lived child not yet reaped
        return ''


def builders_of(pid: int) -> list[psutil.Process]:
    """Return the graph builders among the descendants of process ``pid``."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [child for child in children if BUILDER_MODULE in command_line(child)]


def wait_gone(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Wait for ``processes`` to end; return those still alive after the timeout."""
    _, alive = psutil.wait_procs(processes, timeout=BUILDER_GONE_TIMEOUT_S)
    return alive


def test_builders_of_a_process_with_an_ended_child_is_empty() -> None:
    """A child that has ended but is not yet reaped (a zombie) is skipped, not raised on."""
    child = subprocess.Popen([sys.executable, '-c', 'pass'])
    try:
        deadline = time.monotonic() + ZOMBIE_TIMEOUT_S
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, 'the child did not end'
            time.sleep(0.05)
        assert builders_of(os.getpid()) == []
    finally:
        child.wait()


def test_node_switches_to_the_cached_graph(probe: Probe, weights_dir: Path, compiled_cache,
                                           tmp_path: Path, street_bgr: np.ndarray) -> None:
    root = tmp_path / 'cache'
    shutil.copytree(compiled_cache.root, root, ignore=shutil.ignore_patterns('*.lock'))
    node = NodeProcess('segmenter', parameters(compiled_cache, 'cached'),
                       weights_dir=weights_dir, namespace=NAMESPACE,
                       remaps=(('image', IMAGE_TOPIC),),
                       log_dir=tmp_path, env={'ESPNET_ROS_CACHE': str(root)})
    rgb = np.ascontiguousarray(cv2.resize(street_bgr, CAMERA_SIZE)[..., ::-1])
    eager = SegmentationEngine.from_pretrained(DEFAULT_MODEL, weights_dir=weights_dir,
                                               input_size=compiled_cache.size, device='cpu',
                                               precision='fp32', backend='torch')
    expected = eager.segment(rgb).labels
    publisher = probe.node.create_publisher(Image, IMAGE_TOPIC, 10)
    diagnostics = probe.record(DiagnosticArray, '/diagnostics')
    labels = probe.record(Image, LABELS_TOPIC)

    def publish(stamp_ns: int) -> None:
        publisher.publish(camera_image(rgb, 'rgb8', header_at(stamp_ns, 'camera')))

    with serving(probe, node, IMAGE_TOPIC):
        probe.spin_until(lambda: (node_diagnostics(probe, diagnostics) or {}).get(
            'runner', '').startswith('compiled graph'), SWITCH_TIMEOUT_S,
            'diagnostics saying the node runs the compiled graph')
        values = node_diagnostics(probe, diagnostics)
        assert values['compiled graph'].startswith('compiled: loaded from the cache'), values
        _, outputs = send_until_answered(probe, publish, {'labels': labels})
        answer = image_array(outputs['labels'])
        assert (answer == expected).mean() >= MIN_AGREEMENT
        assert 'switched from eager' in node.log(), node.describe()


def test_ctrl_c_ends_a_build_in_progress(probe: Probe, weights_dir: Path, compiled_cache,
                                         tmp_path: Path) -> None:
    node = NodeProcess('segmenter', parameters(compiled_cache, 'background'),
                       weights_dir=weights_dir, namespace=NAMESPACE,
                       remaps=(('image', IMAGE_TOPIC),),
                       log_dir=tmp_path, env={'ESPNET_ROS_CACHE': str(tmp_path / 'empty')})
    with serving(probe, node, IMAGE_TOPIC):
        builders = probe.spin_until(lambda: builders_of(node.process.pid), START_TIMEOUT_S,
                                    'the node to start building its graph')
    # serving() checked that Ctrl-C ended the node with status 0.
    assert not wait_gone(builders), 'the builder outlived the node'


def test_killed_node_takes_its_builder_along(weights_dir: Path, compiled_cache,
                                             tmp_path: Path) -> None:
    node = NodeProcess('segmenter', parameters(compiled_cache, 'background'),
                       weights_dir=weights_dir, namespace=NAMESPACE,
                       remaps=(('image', IMAGE_TOPIC),),
                       log_dir=tmp_path, env={'ESPNET_ROS_CACHE': str(tmp_path / 'empty')})
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        builders: list[psutil.Process] = []
        while not builders and time.monotonic() < deadline and node.running():
            time.sleep(0.2)
            builders = builders_of(node.process.pid)
        assert builders, node.describe()
    finally:
        node.process.send_signal(signal.SIGKILL)
        node.process.wait()
        node.stop()
    assert not wait_gone(builders), 'the builder outlived the killed node'
    assert not list((tmp_path / 'empty').rglob('job-*')), 'the job file was left behind'
