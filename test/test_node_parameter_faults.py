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
Parameter changes and reloads that go wrong, sent to a small node over real DDS.

A reload that fails (CUDA missing, or a real out-of-memory error, the CPU twin of a CUDA
one) keeps the last working engine; a parameter of an unknown type does not end the node;
max_rate has a floor and a change applies at the next frame; a reload that builds for
minutes leaves the lifecycle services and diagnostics answering. Time limits here are
generous bounds against waits of minutes, never measurements.
"""

from pathlib import Path
import resource
import signal
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
import numpy as np
from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterValue
from rcl_interfaces.srv import SetParameters
from ros_helpers import (GENEROUS_S, NodeProcess, own_node, Probe, Recorder, RELIABLE,
                         send_until_answered, sender, signalled, SMALL_CAMERA_SIZE, SMALL_NODE,
                         small_node_fixtures, subscribed)
from sensor_msgs.msg import Image

NAMESPACE = '/parameter_faults'
NODE = f'{NAMESPACE}/segmenter'
BASE = {**SMALL_NODE, 'reliability': 'reliable'}
CAMERA_SIZE = SMALL_CAMERA_SIZE
# Under the old pacing, the frame after one at max_rate 0.1 waited 10 s whatever came next.
SLOWEST_RATE_HZ = 0.1
FASTER_THAN_OLD_PACING_S = 8.0


segmenter, camera, labels = small_node_fixtures(NAMESPACE, BASE)


def test_failed_reload_keeps_the_last_working_configuration(
        probe: Probe, segmenter: NodeProcess, scene: np.ndarray, labels: Recorder) -> None:
    """CUDA missing, or memory running out at a new resolution: refused, old engine serves."""
    camera = probe.node.create_publisher(Image, f'{NAMESPACE}/image', RELIABLE)
    node, names = NODE, ['device', 'input_width', 'input_height']
    pid = segmenter.process.pid
    try:
        probe.spin_until(camera.get_subscription_count, 30.0, 'the camera to match')
        send_until_answered(probe, sender(camera, scene), {'labels': labels})
        before = probe.get_parameters(node, names)
        result = probe.set_parameters(node, {'device': 'cuda'})[0]
        assert not result.successful and 'CUDA is not available' in result.reason, result
        # Cap the node's address space just above what it uses: a 4096 x 4096 network
        # cannot be allocated, which is what a CUDA out-of-memory error is on a GPU.
        size_kb = int(next(line.split()[1] for line in Path(f'/proc/{pid}/status').read_text()
                           .splitlines() if line.startswith('VmSize:')))
        resource.prlimit(pid, resource.RLIMIT_AS, (size_kb * 1024 + 2 ** 30,
                                                   resource.RLIM_INFINITY))
        try:
            result = probe.set_parameters(node, {'input_width': 4096, 'input_height': 4096},
                                          atomically=True)[0]
        finally:
            resource.prlimit(pid, resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)
        assert not result.successful, 'a 4096 x 4096 network fitted in 1 GB'
        assert 'allocate' in result.reason and 'kept the old' in result.reason, result.reason
        assert probe.get_parameters(node, names) == before
        _, got = send_until_answered(probe, sender(camera, scene), {'labels': labels})
        assert (got['labels'].width, got['labels'].height) == CAMERA_SIZE
        assert 'reload refused, keeping espnet_p2q3_cityscapes on cpu' in segmenter.log()
    finally:
        probe.node.destroy_publisher(camera)
    assert segmenter.running()


def test_a_parameter_of_an_unknown_type_does_not_end_the_node(probe: Probe,
                                                              segmenter: NodeProcess) -> None:
    request = SetParameters.Request(parameters=[
        ParameterMsg(name='max_rate', value=ParameterValue(type=99))])
    probe.call_async(SetParameters, f'{NODE}/set_parameters', request)
    probe.spin_until(lambda: 'a callback failed and was skipped' in segmenter.log(),
                     GENEROUS_S, 'the failure to be logged')
    assert probe.get_parameters(NODE, ['max_rate']) == {'max_rate': 0.0}
    assert segmenter.running(), segmenter.describe()


def test_max_rate_has_a_floor_and_a_change_applies_at_the_next_frame(
        probe: Probe, segmenter: NodeProcess, camera: Any, labels: Recorder,
        scene: np.ndarray) -> None:
    result = probe.set_parameters(NODE, {'max_rate': 1e-11})[0]
    assert not result.successful and f'{SLOWEST_RATE_HZ} Hz' in result.reason, result
    try:
        assert probe.set_parameters(NODE, {'max_rate': SLOWEST_RATE_HZ})[0].successful
        send_until_answered(probe, sender(camera, scene), {'labels': labels})
        assert probe.set_parameters(NODE, {'max_rate': 0.0})[0].successful
        send_until_answered(probe, sender(camera, scene), {'labels': labels},
                            timeout_s=FASTER_THAN_OLD_PACING_S, retry_s=1.0)
    finally:
        probe.set_parameters(NODE, {'max_rate': 0.0})


def test_a_slow_reload_leaves_the_control_plane_answering(probe: Probe, weights_dir: Path,
                                                          tmp_path: Path) -> None:
    """During a compile_mode jit reload, lifecycle services and diagnostics answer."""
    with own_node(probe, '/reload', BASE, weights_dir, tmp_path, subscribed) as node:
        answer = probe.set_parameters_async('/reload/segmenter', {'compile_mode': 'jit'})
        started = time.time_ns()
        assert probe.call(ChangeState, '/reload/segmenter/change_state', ChangeState.Request(
            transition=Transition(id=99)), timeout_s=GENEROUS_S).success is False
        assert probe.lifecycle_state('/reload/segmenter') == 'active'
        recorder = probe.record(DiagnosticArray, '/diagnostics')

        def reloading() -> bool:
            return any(status.name.startswith('/reload/segmenter')
                       and status.message.startswith('reloading')
                       for arrival, message in recorder.messages if arrival > started
                       for status in message.status)
        probe.spin_until(reloading, GENEROUS_S, 'diagnostics saying reloading')
        probe.forget([recorder])
        assert not answer.done(), 'the compile finished too soon to test anything'
        assert signalled(probe, node, signal.SIGINT) == 0, node.describe()
