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
The segmenter under the attacks of issue 18, each sent over real DDS.

Malformed service requests must not end the process; a parameter change applies at the next
frame; decompression bombs are refused from their headers; CameraInfo ROIs give the ROI's
intrinsics; absurd stamps stay out of the latency; a slow reload leaves the control plane
answering; signals stop the node at once, even twice or during a slow configure; and the
lifecycle shutdown transition ends the process. Time limits here are generous bounds against
waits of minutes, never measurements.
"""

from contextlib import contextmanager
from pathlib import Path
import signal
import subprocess
import time
from typing import Callable, Iterator, Optional

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
import pytest
from ros_helpers import (NodeProcess, Probe, serving, START_TIMEOUT_S)

MODEL = 'espnet_p2q3_cityscapes'
BASE = {'model': MODEL, 'input_width': 256, 'input_height': 128, 'device': 'cpu',
        'precision': 'fp32', 'publish_color': False, 'publish_overlay': False,
        'reliability': 'reliable'}
NAMESPACE = '/hard'
NODE = f'{NAMESPACE}/segmenter'
# Far below the minutes the attacks used to cost, far above what the fixed node needs.
GENEROUS_S = 20.0
# Ctrl-C hammered this fast lands some interrupts in the clean-up, which then died of them
# (on the attacker's machine two, 50 ms apart, were enough).
QUICK_SUCCESSION_S = 0.002


@pytest.fixture(scope='module')
def segmenter(probe: Probe, weights_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """Start the node under attack; it must end with status 0 (or have ended so)."""
    node = NodeProcess('segmenter', BASE, namespace=NAMESPACE, weights_dir=weights_dir,
                       log_dir=tmp_path_factory.mktemp('hard'))
    with serving(probe, node, f'{NAMESPACE}/image'):
        yield node
    assert 'Traceback' not in node.log(), node.describe()


# Crashes from one message (items 1 and 2) ----------------------------------------------


@pytest.mark.parametrize('transition', [Transition.TRANSITION_CONFIGURE, 99])
def test_an_unavailable_transition_by_id_is_refused(probe: Probe, segmenter: NodeProcess,
                                                    transition: int) -> None:
    response = probe.call(ChangeState, f'{NODE}/change_state',
                          ChangeState.Request(transition=Transition(id=transition)),
                          timeout_s=GENEROUS_S)
    assert not response.success
    assert probe.lifecycle_state(NODE) == 'active'
    assert segmenter.running(), segmenter.describe()


# Resource exhaustion (item 4) -------------------------------------------------------------


# Signals and slow builds (items 5, 6 and 7), each with a node of its own --------------------

def constructed(probe: Probe, namespace: str) -> bool:
    """Return True once the segmenter in ``namespace`` is built: it configures from now on."""
    return probe.node.count_publishers(f'{namespace}/segmentation/classes') > 0


def subscribed(probe: Probe, namespace: str) -> bool:
    """Return True once the segmenter in ``namespace`` takes camera frames (active)."""
    return probe.node.count_subscribers(f'{namespace}/image') > 0


@contextmanager
def own_node(probe: Probe, namespace: str, parameters: dict, weights_dir: Path, log_dir: Path,
             ready: Callable[[Probe, str], bool]) -> Iterator[NodeProcess]:
    """Start a segmenter of its own, yield it once ``ready``, watched; stop it in the end."""
    node = NodeProcess('segmenter', parameters, namespace=namespace, weights_dir=weights_dir,
                       log_dir=log_dir)
    probe.watched.append(node)
    try:
        probe.spin_until(lambda: ready(probe, namespace), START_TIMEOUT_S,
                         f'the node in {namespace} to start')
        yield node
    finally:
        if node in probe.watched:
            probe.watched.remove(node)
        node.stop()


def exit_status(node: NodeProcess) -> Optional[int]:
    """Return the exit status once the process ends; None if it runs on for long."""
    try:
        return node.process.wait(GENEROUS_S)
    except subprocess.TimeoutExpired:
        return None


def signalled(probe: Probe, node: NodeProcess, signum: int) -> Optional[int]:
    """Send ``signum``; return the exit status, None if the process runs on for long."""
    probe.watched.remove(node)
    node.process.send_signal(signum)
    return exit_status(node)


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_slow_configure_stops_the_node(probe: Probe, weights_dir: Path,
                                                         tmp_path: Path, signum: int) -> None:
    """torch-compile takes minutes on a busy CPU: the signal must not wait for it."""
    with own_node(probe, f'/compiling{int(signum)}', {**BASE, 'backend': 'torch-compile'},
                  weights_dir, tmp_path, constructed) as node:
        assert signalled(probe, node, signum) == 0, node.describe()


def test_ctrl_c_again_and_again_does_not_abort(probe: Probe, weights_dir: Path,
                                               tmp_path: Path) -> None:
    """Ctrl-C again and again until the process is gone: some land in the clean-up."""
    with own_node(probe, '/twice', BASE, weights_dir, tmp_path, subscribed) as node:
        probe.watched.remove(node)
        deadline = time.monotonic() + GENEROUS_S
        while node.running() and time.monotonic() < deadline:
            node.process.send_signal(signal.SIGINT)
            time.sleep(QUICK_SUCCESSION_S)
        assert exit_status(node) == 0, node.describe()
        assert 'Traceback' not in node.log(), node.describe()


# The end of the lifecycle (item 9), last of all: it ends the module's node -------------

def test_the_shutdown_transition_ends_the_process(probe: Probe,
                                                  segmenter: NodeProcess) -> None:
    response = probe.call(ChangeState, f'{NODE}/change_state', ChangeState.Request(
        transition=Transition(id=Transition.TRANSITION_ACTIVE_SHUTDOWN, label='shutdown')))
    assert response.success
    probe.watched.remove(segmenter)
    try:
        segmenter.process.wait(GENEROUS_S)
    except subprocess.TimeoutExpired:
        pass
    finally:
        probe.watched.append(segmenter)  # serving() removes it again
    assert segmenter.process.returncode == 0, segmenter.describe()
