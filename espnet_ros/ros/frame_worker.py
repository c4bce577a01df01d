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
The inference thread of the segmenter: takes the newest frame, publishes its outputs.

It runs off the executor thread so that camera callbacks never wait for the network. Bad
frames are dropped with a warning, throttled per kind of problem, and counted for the
diagnostics; the thread carries on with the next frame.
"""

from dataclasses import dataclass
import math
import re
import threading
import time
from typing import Any, Callable, Optional

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from espnet_ros.imaging.camera_model import scale_intrinsics
from espnet_ros.imaging.codec import (decode_message, encode_32fc1, encode_mono8, encode_rgb8,
                                      ImageFormatError)
from espnet_ros.imaging.pipeline import FrameOutputs, OutputRequest, run_frame
from espnet_ros.ros.messages import image_message, PROCESSING_MEDIAN_KEY, stamp_ns
from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.streaming.handoff import NewestWins
from espnet_ros.streaming.stats import LatencyWindow, RateMeter

TAKE_TIMEOUT_S = 0.1   # how often an idle worker checks whether it should stop
SHUTDOWN_WAIT_S = 0.2  # at shutdown, how long a frame in flight may delay the exit
WARN_THROTTLE_S = 5.0
MAX_PROBLEM_KINDS = 64
# Numbers and quoted names differ between frames with the same kind of problem.
_VARYING = re.compile(r"'[^']*'|\"[^\"]*\"|\d[\d,.]*")


@dataclass(frozen=True)
class Frame:
    """A camera message and when it arrived (monotonic ns)."""

    message: Any
    received_ns: int


class ProblemLog:
    """
    Warnings throttled per kind of problem, so that one noisy kind hides no other.

    The first warning of a kind is logged at once; more of that kind within ``period_s`` are
    only counted, and the next one logged says how many were left out.
    """

    def __init__(self, warn: Callable[[str], None], period_s: float = WARN_THROTTLE_S) -> None:
        self._warn = warn
        self._period_s = period_s
        self._kinds: dict[str, tuple[float, int]] = {}  # kind: (last logged, left out since)

    def warning(self, text: str) -> None:
        """Log ``text`` unless a warning of its kind was logged less than a period ago."""
        kind = _VARYING.sub('#', text)
        if kind not in self._kinds and len(self._kinds) >= MAX_PROBLEM_KINDS:
            kind = ''  # a stream of ever new kinds (made-up encodings) shares one throttle
        now = time.monotonic()
        logged, left_out = self._kinds.get(kind, (-math.inf, 0))
        if now - logged < self._period_s:
            self._kinds[kind] = (logged, left_out + 1)
            return
        self._kinds[kind] = (now, 0)
        self._warn(text + (f' ({left_out} more like it since the last such warning)'
                           if left_out else ''))


@dataclass
class Counters:
    """What the diagnostics report about the frames seen."""

    received: int = 0
    processed: int = 0
    malformed: int = 0
    stamp_backwards: int = 0
    failed: int = 0
    last_problem: str = ''


class FrameWorker:
    """Owns the engine and the thread that runs it on the newest frame."""

    def __init__(self, node: Node, engine: SegmentationEngine,
                 frames: NewestWins[Frame]) -> None:
        self.node = node
        self.engine = engine
        self.frames = frames
        self.camera_info: Optional[CameraInfo] = None
        self.counters = Counters()
        self.problem_log = ProblemLog(node.get_logger().warning)
        self.problems_reported = 0
        self.input_rate = RateMeter()
        self.output_rate = RateMeter()
        self.latency = LatencyWindow()
        self.processing = LatencyWindow()  # the node's own per-frame work: decode to publish
        self._last_stamp_ns = 0
        self._last_header = Header()
        self._engine_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.apply_live(node.values)

    # Control, from the executor thread -------------------------------------------------

    def apply_live(self, values: dict[str, Any]) -> None:
        """Take the run-time parameters (rate, alpha, switches, limits) for the next frame."""
        self.max_rate = values['max_rate']
        self.max_pixels = values['max_input_pixels']
        self.wanted = OutputRequest(color=values['publish_color'],
                                    overlay=values['publish_overlay'],
                                    confidence=values['publish_confidence'],
                                    output_resolution=values['output_resolution'],
                                    alpha=values['overlay_alpha'])

    def start(self) -> None:
        """Start the inference thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name='segmenter-inference',
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: Optional[float] = None) -> None:
        """
        Stop the thread after the frame in flight, waiting at most ``timeout`` seconds.

        Deactivation waits for the frame (so that a quick re-activation never runs two
        inference threads) and drops a frame still waiting; shutdown waits only briefly, as
        the thread is a daemon and the process is ending.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.frames.take(timeout=0)

    def swap_engine(self, engine: SegmentationEngine) -> None:
        """Replace the engine between two frames."""
        with self._engine_lock:
            old, self.engine = self.engine, engine
        old.release()

    def engine_to_device(self) -> None:
        """Move the network back to its device (after deactivate)."""
        self.engine.to_device()

    def engine_to_host(self) -> None:
        """Move the network to host memory, freeing the GPU while inactive."""
        self.engine.release()

    def count_received(self) -> None:
        """Count a frame arriving from the camera."""
        self.counters.received += 1
        self.input_rate.tick()

    def last_header_or_empty(self) -> Header:
        """Return the header of the last processed frame (empty before the first)."""
        return self._last_header

    # The thread -------------------------------------------------------------------------

    def _run(self) -> None:
        next_allowed = 0.0
        while not self._stop.is_set():
            if self.max_rate > 0:
                self._stop.wait(max(0.0, next_allowed - time.monotonic()))
            frame = self.frames.take(TAKE_TIMEOUT_S)
            if frame is None or self._stop.is_set():
                continue
            started = time.monotonic()
            next_allowed = started + (1.0 / self.max_rate if self.max_rate > 0 else 0.0)
            try:
                with self._engine_lock:
                    self._process(frame)
            except ImageFormatError as error:
                self._problem('malformed', f'dropped a malformed frame: {error}')
            except Exception as error:  # noqa: B902 - one bad frame must not end the thread
                if not self.node.context.ok():
                    return  # ROS shut down under a frame in flight: nothing left to publish to
                self._problem('failed', f'frame failed: {type(error).__name__}: {error}')

    def _problem(self, counter: str, text: str) -> None:
        setattr(self.counters, counter, getattr(self.counters, counter) + 1)
        self.counters.last_problem = text
        self.problem_log.warning(text)

    def _process(self, frame: Frame) -> None:
        started = time.monotonic()
        message = frame.message
        stamp = stamp_ns(message.header)
        if stamp and stamp < self._last_stamp_ns:
            self._problem('stamp_backwards', f'dropped a frame whose stamp went back in time '
                                             f'({stamp} ns < last {self._last_stamp_ns} ns)')
            # Follow the new clock so a camera that restarted loses one frame, not all.
            self._last_stamp_ns = stamp
            return
        self._last_stamp_ns = stamp
        image = decode_message(message, max_pixels=self.max_pixels)
        outputs = run_frame(self.engine, image, self._request_for_subscribers())
        self._publish(message.header, outputs, image.pixels.shape[:2])
        self._last_header = message.header
        self.counters.processed += 1
        self.output_rate.tick()
        now = self.node.get_clock().now().nanoseconds
        self.latency.add(((now - stamp) if stamp else (time.monotonic_ns() - frame.received_ns))
                         / 1e9)
        self.processing.add(time.monotonic() - started)

    def _listened(self, output: str) -> bool:
        return self.node.publishers_by_output[output].get_subscription_count() > 0

    def _request_for_subscribers(self) -> OutputRequest:
        """Return the wanted outputs, less those nobody subscribes to."""
        wanted = self.wanted
        return OutputRequest(color=wanted.color and self._listened('color'),
                             overlay=wanted.overlay and self._listened('overlay'),
                             confidence=wanted.confidence and self._listened('confidence'),
                             output_resolution=wanted.output_resolution, alpha=wanted.alpha)

    def _publish(self, header: Header, outputs: FrameOutputs,
                 camera_size: tuple[int, int]) -> None:
        height, width = outputs.labels.shape
        publishers = self.node.publishers_by_output
        packed = {'labels': encode_mono8(outputs.labels) if self._listened('labels') else None,
                  'color': outputs.color is not None and encode_rgb8(outputs.color),
                  'overlay': outputs.overlay is not None and encode_rgb8(outputs.overlay),
                  'confidence': outputs.confidence is not None and encode_32fc1(
                      outputs.confidence)}
        for output, encoded in packed.items():
            if encoded:
                publishers[output].publish(image_message(header, encoded, height, width))
        if self.camera_info is not None:
            publishers['camera_info'].publish(
                self._rescaled_info(header, camera_size, (width, height)))

    def _rescaled_info(self, header: Header, camera_size: tuple[int, int],
                       label_size: tuple[int, int]) -> CameraInfo:
        source = self.camera_info
        info = CameraInfo(header=header, width=label_size[0], height=label_size[1],
                          distortion_model=source.distortion_model, d=source.d, r=source.r,
                          k=source.k, p=source.p)
        from_size = (source.width or camera_size[1], source.height or camera_size[0])
        if from_size != label_size:
            info.k, info.p = scale_intrinsics(source.k, source.p, from_size=from_size,
                                              to_size=label_size)
        return info


def diagnostic_status(worker: Optional[FrameWorker], name: str) -> DiagnosticStatus:
    """Return the node's diagnostic status: rates, latency, drops, model and device."""
    status = DiagnosticStatus(name=f'{name}: segmentation', hardware_id=name)
    if worker is None:
        status.level, status.message = DiagnosticStatus.WARN, 'not configured: no model loaded'
        return status
    counters, engine = worker.counters, worker.engine
    values = {
        'model': engine.spec.name,
        'device': str(engine.device),
        'precision': engine.precision,
        'backend': engine.backend,
        'network input': '{}x{}'.format(*engine.input_size),
        'input rate (Hz)': f'{worker.input_rate.rate():.2f}',
        'processed rate (Hz)': f'{worker.output_rate.rate():.2f}',
        'latency median (ms)': f'{1000 * worker.latency.percentile(50):.1f}',
        'latency p95 (ms)': f'{1000 * worker.latency.percentile(95):.1f}',
        PROCESSING_MEDIAN_KEY: f'{1000 * worker.processing.percentile(50):.1f}',
        'frames received': str(counters.received),
        'frames processed': str(counters.processed),
        'frames dropped (newer frame arrived)': str(worker.frames.replaced),
        'frames malformed': str(counters.malformed),
        'frames with stamp going backwards': str(counters.stamp_backwards),
        'frames failed': str(counters.failed),
        'last problem': counters.last_problem,
    }
    status.values = [KeyValue(key=key, value=value) for key, value in values.items()]
    problems = counters.malformed + counters.stamp_backwards + counters.failed
    recent = problems - worker.problems_reported
    worker.problems_reported = problems
    status.level = DiagnosticStatus.WARN if recent else DiagnosticStatus.OK
    status.message = (f'{recent} frames rejected since the last report; last: '
                      f'{counters.last_problem}' if recent else 'segmenting')
    return status
