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
Helpers for the tests that run our nodes over real DDS.

A node under test runs as its own process (``python -m espnet_ros.ros.<node> --ros-args``)
under the session's DDS isolation (conftest.py). The test talks to it through a
:class:`Probe`: a node in a private rclpy context, spun from the test thread with a deadline
on every wait, so that a hang fails the test instead of blocking the run.
"""

import array
from contextlib import contextmanager
import os
from pathlib import Path
import subprocess
import time
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from builtin_interfaces.msg import Time
import cv2
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
import numpy as np
import pytest
from rcl_interfaces.msg import SetParametersResult
from rcl_interfaces.srv import GetParameters, SetParameters, SetParametersAtomically
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from espnet_ros.streaming.worker import stamp_ns
from espnet_ros.tools.live_run import node_command, stop

REPO_ROOT = Path(__file__).resolve().parents[1]
PROFILE = REPO_ROOT / 'config' / 'fastdds_localhost.xml'
START_TIMEOUT_S = 180.0   # importing torch and loading a model on a busy 2-core machine
STOP_TIMEOUT_S = 10.0
SERVICE_TIMEOUT_S = 120.0  # a parameter change that reloads the model answers when loaded
SPIN_STEP_S = 0.02
PRIME_RESEND_S = 5.0  # a lost answer is sent again after this; a loaded node answers sooner
# Requests each service answers without changing anything (see Probe._prime).
NO_OP_REQUESTS: dict[Any, Callable[[], Any]] = {
    GetState: GetState.Request,
    ChangeState: lambda: ChangeState.Request(transition=Transition(label='no_such_transition')),
    GetParameters: GetParameters.Request,
    SetParameters: SetParameters.Request,
    SetParametersAtomically: SetParametersAtomically.Request,
}
# Reliable with some depth: a test counts every output, a slow spin must not lose any.
RECORD_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
# Bytes per pixel of the encodings the tests send, and the channel order the node sees.
SENT_ENCODINGS = {'rgb8': (3, 'rgb'), 'bgr8': (3, 'bgr'), 'mono8': (1, 'rgb'),
                  'rgba8': (4, 'rgb')}


def child_env(weights_dir: Optional[Path]) -> dict[str, str]:
    """Return the environment of a node process: the session's DDS isolation, our weights."""
    profile = os.environ.get('FASTRTPS_DEFAULT_PROFILES_FILE', '')
    # Refuse to start a participant that could talk to the LAN (conftest.py sets these).
    assert Path(profile).resolve() == PROFILE.resolve(), (
        f'FASTRTPS_DEFAULT_PROFILES_FILE is {profile!r}, not {PROFILE}: DDS is not isolated')
    assert os.environ.get('ROS_DOMAIN_ID'), 'ROS_DOMAIN_ID is not set: DDS is not isolated'
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    if weights_dir is not None:
        env['ESPNET_ROS_MODELS'] = str(weights_dir)
    return env


class NodeProcess:
    """One of our nodes as a child process; its output goes to a log file shown on failure."""

    def __init__(self, executable: str, parameters: dict[str, Any], *, log_dir: Path,
                 weights_dir: Optional[Path] = None, remaps: Sequence[tuple[str, str]] = (),
                 namespace: str = '', env: Optional[dict[str, str]] = None) -> None:
        if executable == 'segmenter':
            # Eager unless a test asks: a graph compiled aside would load the machine for
            # minutes (test_graph_cache.py and test_segmenter_compiled.py test it).
            parameters = {'compile_mode': 'eager', **parameters}
        self.command = node_command(executable, namespace, parameters, remaps=remaps)
        self.log_path = log_dir / f'{executable}{namespace.replace("/", "_")}.log'
        self._log = open(self.log_path, 'w')
        self.process = subprocess.Popen(self.command, cwd=REPO_ROOT,
                                        env={**child_env(weights_dir), **(env or {})},
                                        stdout=self._log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        """Return what the node printed so far."""
        return self.log_path.read_text(errors='replace')

    def running(self) -> bool:
        """Tell whether the process is still alive."""
        return self.process.poll() is None

    def describe(self) -> str:
        """Return the command, exit status and log, for assertion messages."""
        status = 'running' if self.running() else f'exited with {self.process.returncode}'
        return f'{" ".join(self.command)}\n({status}) log:\n{self.log()[-6000:]}'

    def stop(self) -> Optional[int]:
        """Interrupt the node like Ctrl-C, kill it if it hangs; return its exit status."""
        status = stop(self.process, STOP_TIMEOUT_S)
        self._log.close()
        return status


def header_at(nanoseconds: int, frame_id: str) -> Header:
    """Return a header stamped at ``nanoseconds``."""
    return Header(stamp=Time(sec=nanoseconds // 1_000_000_000,
                             nanosec=nanoseconds % 1_000_000_000), frame_id=frame_id)


def camera_image(rgb: np.ndarray, encoding: str, header: Header,
                 row_padding: int = 0) -> Image:
    """Return ``rgb`` as a sensor_msgs/Image in ``encoding``, rows padded by junk bytes."""
    height, width = rgb.shape[:2]
    if encoding == 'bgr8':
        pixels = rgb[..., ::-1]
    elif encoding == 'mono8':
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif encoding == 'rgba8':
        pixels = np.dstack([rgb, np.full((height, width), 200, np.uint8)])
    else:
        pixels = rgb
    row_bytes = width * SENT_ENCODINGS[encoding][0]
    # Junk in the padding catches a reader that ignores ``step``.
    rows = np.full((height, row_bytes + row_padding), 0xA5, np.uint8)
    rows[:, :row_bytes] = pixels.reshape(height, row_bytes)
    message = Image(header=header, height=height, width=width, encoding=encoding,
                    is_bigendian=0, step=row_bytes + row_padding)
    message.data = array.array('B', rows.tobytes())
    return message


def as_seen_by_node(rgb: np.ndarray, encoding: str) -> tuple[np.ndarray, str]:
    """Return the H x W x 3 pixels and channel order the node decodes from camera_image()."""
    if encoding == 'bgr8':
        return np.ascontiguousarray(rgb[..., ::-1]), 'bgr'
    if encoding == 'mono8':
        return np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2), 'rgb'
    return rgb, 'rgb'


def image_array(message: Image) -> np.ndarray:
    """Return an output image as numpy: mono8 H x W, rgb8 H x W x 3, 32FC1 H x W float32."""
    channels, dtype = {'mono8': (1, np.uint8), 'rgb8': (3, np.uint8),
                       '32FC1': (1, np.dtype('>f4' if message.is_bigendian else '<f4'))}[
                           message.encoding]
    row_bytes = message.width * channels * np.dtype(dtype).itemsize
    assert message.step >= row_bytes, f'step {message.step} < row of {row_bytes} bytes'
    assert len(message.data) == message.step * message.height, 'data is not step * height'
    rows = np.frombuffer(message.data, np.uint8).reshape(message.height, message.step)
    pixels = np.ascontiguousarray(rows[:, :row_bytes]).view(dtype)
    return pixels.reshape((message.height, message.width, channels)[:2 if channels == 1 else 3])


def parameter_msgs(values: dict[str, Any]) -> list:
    """Return rcl_interfaces/Parameter messages, typed from the Python values."""
    return [Parameter(name, value=value).to_parameter_msg() for name, value in values.items()]


def diagnostic_values(message: DiagnosticArray, node: str) -> Optional[dict[str, str]]:
    """Return the key/values of ``node``'s status in a diagnostics message, or None."""
    for status in message.status:
        if status.name == f'{node}: segmentation':
            return {item.key: item.value for item in status.values}
    return None


class WaitTimeout(AssertionError):
    """A wait of :meth:`Probe.spin_until` ran past its deadline."""


class Recorder:
    """Every message on a topic, with its arrival time (system clock, ns)."""

    def __init__(self, probe: 'Probe', message_type: Any, topic: str,
                 qos: QoSProfile = RECORD_QOS) -> None:
        self.topic = topic
        self.messages: list[tuple[int, Any]] = []
        self.subscription = probe.node.create_subscription(
            message_type, topic, lambda message: self.messages.append((time.time_ns(), message)),
            qos)

    def with_stamp(self, wanted_ns: int) -> list[Any]:
        """Return the messages whose header carries the stamp ``wanted_ns``."""
        return [message for _, message in self.messages if stamp_ns(message.header) == wanted_ns]


class Probe:
    """The test's own node, in a private rclpy context."""

    def __init__(self, name: str) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.watched: list[NodeProcess] = []
        self._clients: dict[tuple[Any, str], Any] = {}

    def close(self) -> None:
        """Destroy the node and shut the context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def spin_for(self, seconds: float) -> None:
        """Run callbacks for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(SPIN_STEP_S, max(end - time.monotonic(), 0)))

    def spin_until(self, condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
        """Run callbacks until ``condition()`` is truthy and return it; fail past the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = condition()
            if result:
                return result
            for process in self.watched:
                assert process.running(), f'node died while waiting for {what}:\n' + \
                    process.describe()
            if time.monotonic() > deadline:
                logs = '\n'.join(process.describe() for process in self.watched)
                raise WaitTimeout(f'timed out after {timeout_s:.0f} s waiting for {what}\n'
                                  + logs)
            self.executor.spin_once(timeout_sec=SPIN_STEP_S)

    def record(self, message_type: Any, topic: str, qos: QoSProfile = RECORD_QOS) -> Recorder:
        """Subscribe to ``topic`` and keep what arrives."""
        return Recorder(self, message_type, topic, qos)

    def forget(self, recorders: Iterable[Recorder]) -> None:
        """Unsubscribe recorders (the node then stops rendering outputs nobody listens to)."""
        for recorder in recorders:
            self.node.destroy_subscription(recorder.subscription)

    def call_async(self, service_type: Any, name: str, request: Any) -> Future:
        """Send a service request once the service is up; return the future of its answer."""
        if (service_type, name) not in self._clients:
            client = self.node.create_client(service_type, name)
            self.spin_until(client.service_is_ready, START_TIMEOUT_S, f'service {name}')
            self._prime(client, name)
            self._clients[service_type, name] = client
        return self._clients[service_type, name].call_async(request)

    def _prime(self, client: Any, name: str) -> None:
        """
        Send a request that changes nothing until one is answered.

        A client is "ready" once its request reaches the server, but Fast DDS drops the answer
        if the server has not yet discovered the client's response reader (it waits 100 ms,
        ros2/rmw_fastrtps#390, #467), which a loaded machine can exceed. Once one answer came
        back, the answers of the requests that matter do too.
        """
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            future = client.call_async(NO_OP_REQUESTS[client.srv_type]())
            try:
                self.spin_until(future.done, min(PRIME_RESEND_S, deadline - time.monotonic()),
                                f'an answer from {name}')
                return
            except WaitTimeout:
                client.remove_pending_request(future)
                if time.monotonic() > deadline:
                    raise

    def call(self, service_type: Any, name: str, request: Any,
             timeout_s: float = SERVICE_TIMEOUT_S) -> Any:
        """Call a service and return its response."""
        future = self.call_async(service_type, name, request)
        self.spin_until(future.done, timeout_s, f'the answer of {name}')
        return future.result()

    def set_parameters_async(self, node: str, values: dict[str, Any]) -> Future:
        """Start setting parameters of ``node`` at once; the future's answer has ``result``."""
        return self.call_async(SetParametersAtomically, f'{node}/set_parameters_atomically',
                               SetParametersAtomically.Request(parameters=parameter_msgs(values)))

    def set_parameters(self, node: str, values: dict[str, Any], *,
                       atomically: bool = False) -> list[SetParametersResult]:
        """Set parameters of ``node`` through its parameter service; return each result."""
        if atomically:
            future = self.set_parameters_async(node, values)
            self.spin_until(future.done, SERVICE_TIMEOUT_S, f'{node} to set {values}')
            return [future.result().result]
        response = self.call(SetParameters, f'{node}/set_parameters',
                             SetParameters.Request(parameters=parameter_msgs(values)))
        return list(response.results)

    def get_parameters(self, node: str, names: Sequence[str]) -> dict[str, Any]:
        """Return the current values of parameters of ``node``."""
        response = self.call(GetParameters, f'{node}/get_parameters',
                             GetParameters.Request(names=list(names)))
        return {name: parameter_value_to_python(value)
                for name, value in zip(names, response.values)}

    def change_state(self, node: str, transition: int) -> bool:
        """Ask lifecycle node ``node`` for a transition; return whether it succeeded."""
        response = self.call(ChangeState, f'{node}/change_state',
                             ChangeState.Request(transition=Transition(id=transition)))
        return response.success

    def lifecycle_state(self, node: str) -> str:
        """Return the label of lifecycle node ``node``'s current state."""
        return self.call(GetState, f'{node}/get_state', GetState.Request()).current_state.label


def send_until_answered(probe: Probe, publish: Callable[[int], None],
                        recorders: dict[str, Recorder], timeout_s: float = 90.0,
                        retry_s: float = 3.0) -> tuple[int, dict[str, Any]]:
    """
    Publish frames until every recorder holds an output of one of them.

    ``publish(stamp_ns)`` sends one frame stamped ``stamp_ns`` (increasing wall-clock time,
    as the node drops frames whose stamp goes backwards). A frame may be dropped (newest wins)
    or processed before the node has seen every subscriber, so a new frame follows every
    ``retry_s``. Returns the answered frame's stamp and one output per recorder for it.
    """
    sent: list[int] = []

    def answered() -> Optional[tuple[int, dict[str, Any]]]:
        for stamp in reversed(sent):
            outputs = {name: recorder.with_stamp(stamp) for name, recorder in recorders.items()}
            if all(outputs.values()):
                assert all(len(found) == 1 for found in outputs.values()), (
                    f'outputs published twice for one frame: '
                    f'{ {name: len(found) for name, found in outputs.items()} }')
                return stamp, {name: found[0] for name, found in outputs.items()}
        return None

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sent.append(time.time_ns())
        publish(sent[-1])
        try:
            return probe.spin_until(answered, min(retry_s, deadline - time.monotonic()),
                                    'outputs')
        except WaitTimeout:
            pass
    raise AssertionError(f'no frame of {len(sent)} sent got all of {sorted(recorders)} within '
                         f'{timeout_s:.0f} s\n'
                         + '\n'.join(process.describe() for process in probe.watched))


@contextmanager
def serving(probe: Probe, node: NodeProcess, image_topic: str) -> Iterator[NodeProcess]:
    """
    Yield ``node`` once it subscribes to ``image_topic``.

    Afterwards the node is stopped with Ctrl-C and must exit with status 0.
    """
    probe.watched.append(node)
    try:
        probe.spin_until(lambda: probe.node.count_subscribers(image_topic), START_TIMEOUT_S,
                         f'the segmenter to subscribe to {image_topic}')
        yield node
    finally:
        probe.watched.remove(node)
        status = node.stop()
    assert status == 0, node.describe()


@contextmanager
def serving_with_depth(probe: Probe, node: NodeProcess, topics: dict[str, str]
                       ) -> Iterator[NodeProcess]:
    """
    Yield ``node`` once it subscribes to its camera and depth topics (``publish_points``).

    ``topics`` maps the node's relative input names (``image``, ``depth/image``, ...) to the
    topics they are remapped to; stopped as :func:`serving` stops it.
    """
    with serving(probe, node, topics['image']):
        probe.spin_until(lambda: probe.node.count_subscribers(topics['depth/image']),
                         START_TIMEOUT_S, 'the depth subscription')
        yield node


@contextmanager
def depth_segmenter(probe: Probe, parameters: dict[str, Any], topics: dict[str, str], *,
                    weights_dir: Path, namespace: str, log_dir: Path
                    ) -> Iterator[NodeProcess]:
    """Start the segmenter in ``namespace``, inputs remapped to ``topics``; serve it with depth."""
    node = NodeProcess('segmenter', parameters, weights_dir=weights_dir, namespace=namespace,
                       remaps=tuple(topics.items()), log_dir=log_dir)
    with serving_with_depth(probe, node, topics):
        yield node


def input_publishers(probe: Probe, topics: dict[str, str]) -> dict[str, Any]:
    """Return a publisher on each of ``topics`` (CameraInfo for the *info names, else Image)."""
    return {name: probe.node.create_publisher(CameraInfo if 'info' in name else Image, topic,
                                              RECORD_QOS)
            for name, topic in topics.items()}


# The small node ----------------------------------------------------------------------------
# Most node tests start this one: ESPNet p=2 q=3 at 256x128 on the CPU, labels only, quick to
# load on a busy machine. Each module starts its own in a namespace of its own, so that a
# node of an earlier module still ending cannot answer for it.

SMALL_NODE = {'model': 'espnet_p2q3_cityscapes', 'input_width': 256, 'input_height': 128,
              'device': 'cpu', 'precision': 'fp32', 'publish_color': False,
              'publish_overlay': False}
SMALL_CAMERA_SIZE = (160, 120)  # (width, height) of the frames the tests send it
RELIABLE = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
# Far below the minutes the attacks of issue 18 used to cost, far above what the node needs.
GENEROUS_S = 20.0


def no_traceback(node: NodeProcess) -> None:
    """Fail if the node printed a Python traceback."""
    assert 'Traceback' not in node.log(), node.describe()


def sender(camera: Any, rgb: np.ndarray) -> Callable[[int], None]:
    """Return ``publish(stamp)`` for well-formed frames."""
    return lambda stamp: camera.publish(camera_image(rgb, 'rgb8', header_at(stamp, 'cam')))


def small_node_fixtures(namespace: str, parameters: dict[str, Any]) -> tuple[Any, Any, Any]:
    """
    Return the fixtures ``segmenter, camera, labels`` of a module's small node.

    The module assigns them to those names. ``segmenter`` (module scope) starts the node in
    ``namespace`` with ``parameters`` and yields it once it serves (no traceback in the end);
    ``camera`` is a reliable camera publisher it matched and ``labels`` a recorder of its
    labels, each for one test.
    """
    @pytest.fixture(scope='module')
    def segmenter(probe: Probe, weights_dir: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
        """Start the module's node; it must end with status 0 (or have ended so)."""
        node = NodeProcess('segmenter', parameters, namespace=namespace,
                           weights_dir=weights_dir,
                           log_dir=tmp_path_factory.mktemp(namespace.strip('/')))
        with serving(probe, node, f'{namespace}/image'):
            yield node
        no_traceback(node)

    @pytest.fixture
    def camera(probe: Probe, segmenter: NodeProcess) -> Iterator[Any]:
        """Return a reliable camera publisher matched by the node."""
        publisher = probe.node.create_publisher(Image, f'{namespace}/image', RELIABLE)
        probe.spin_until(publisher.get_subscription_count, 30.0, 'the camera to match')
        yield publisher
        probe.node.destroy_publisher(publisher)

    @pytest.fixture
    def labels(probe: Probe, segmenter: NodeProcess) -> Iterator[Recorder]:
        """Return a recorder of the node's labels, for one test."""
        recorder = probe.record(Image, f'{namespace}/segmentation/labels')
        yield recorder
        probe.forget([recorder])

    return segmenter, camera, labels


# Nodes of a test's own, for signals and slow builds -------------------------------------

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
