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
The inference worker: a thread that takes the newest camera frame and hands its outputs on.

It runs off the executor so that camera callbacks never wait for the network. It knows no
ROS: frames are messages read by their fields (see :func:`espnet_ros.imaging.codec.
decode_message`), outputs go to an :class:`OutputSink`, time comes from a clock and
problems go to a warn function. Bad frames are dropped, counted and warned about (throttled
per kind); the thread carries on with the next frame. :meth:`FrameWorker.snapshot` gives
frozen statistics for the diagnostics.
"""

from dataclasses import dataclass
import math
import threading
import time
from typing import Any, Callable, Optional, Protocol

import torch

from espnet_ros.imaging.codec import decode_message, ImageFormatError
from espnet_ros.imaging.pipeline import FrameOutputs, OutputRequest, run_frame
from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.runtime.options import Output
from espnet_ros.runtime.process import prepare_inference_thread
from espnet_ros.streaming.handoff import NewestWins
from espnet_ros.streaming.outputs import request_for
from espnet_ros.streaming.problems import ProblemLog
from espnet_ros.streaming.stats import LatencyWindow, RateMeter
from espnet_ros.zoo.registry import ModelSpec

TAKE_TIMEOUT_S = 0.1   # how often an idle or pacing worker re-reads its stop flag and rate
NS_PER_S = 1_000_000_000
# A stamp further from the clock than this is not when the frame was taken (a camera clock
# in 1970, a wrong time zone, a bag without sim time): its latency is left out and counted.
MAX_STAMP_LEAD_S = 1.0     # ahead of our clock: more than clock skew between two machines
MAX_STAMP_AGE_S = 60.0     # behind it: longer than any frame waits (newest wins) or takes


def stamp_ns(header: Any) -> int:
    """Return a message header's stamp in nanoseconds (rclpy and rosbags headers alike)."""
    return header.stamp.sec * NS_PER_S + header.stamp.nanosec


@dataclass(frozen=True)
class Frame:
    """A camera message and when it arrived (monotonic ns)."""

    message: Any
    received_ns: int


@dataclass(frozen=True)
class LiveSettings:
    """The run-time settings a frame is processed with; replaced whole, never edited."""

    max_rate: float = 0.0            # frames per second at most; 0 = no limit
    max_pixels: Optional[int] = None  # larger frames are dropped as malformed
    request: OutputRequest = OutputRequest()


class OutputSink(Protocol):
    """Where a worker's outputs go: the node's publishers, or a recorder in a test."""

    def wants(self, output: Output) -> bool:
        """Return True if someone takes ``output`` now (labels are computed regardless)."""

    def publish(self, header: Any, outputs: FrameOutputs, camera_size: tuple[int, int]) -> None:
        """Hand on one frame's outputs, stamped with its ``header``; camera H x W given."""

    def closed(self) -> bool:
        """Return True once the outputs are gone for good (the process is shutting down)."""


@dataclass(frozen=True)
class WorkerStats:
    """A frozen snapshot of what a worker has seen, for diagnostics."""

    model: str
    device: str
    precision: str
    backend: str
    input_size: tuple[int, int]
    received: int
    processed: int
    dropped: int          # replaced by a newer frame before the worker took them
    malformed: int
    stamp_backwards: int
    failed: int
    implausible_stamps: int   # processed, but left out of the latency figures
    last_problem: str
    input_rate_hz: float
    output_rate_hz: float
    latency_median_s: float
    latency_p95_s: float
    processing_median_s: float
    threads: int = 0      # PyTorch's CPU threads on the inference thread (0: not started)
    runner: str = ''      # what runs the frames now, e.g. 'compiled graph (mixed)'
    compiled_graph: str = 'none'  # the move to a compiled graph: state and detail

    @property
    def problems(self) -> int:
        """Return the number of frames rejected so far for any reason."""
        return self.malformed + self.stamp_backwards + self.failed


class EngineControl:
    """
    What a worker's owner asks of the engine it serves with: which, and its device's state.

    The worker swaps ``_engine`` under its lock on a reload; these read the one serving now.
    """

    _engine: SegmentationEngine

    @property
    def engine(self) -> SegmentationEngine:
        """Return the engine serving now."""
        return self._engine

    @property
    def spec(self) -> ModelSpec:
        """Return the model serving now."""
        return self._engine.spec

    def describe_engine(self) -> str:
        """Return the model serving now and its device, e.g. 'espnet_p2q8_camvid on cpu'."""
        engine = self._engine
        return f'{engine.spec.name} on {engine.device}'

    def to_device(self) -> None:
        """Move the engine back to its device, before the thread starts again."""
        self._engine.to_device()

    def release_device(self) -> None:
        """Give the engine's GPU memory back while stopped (nothing on the CPU)."""
        self._engine.release()

    def close_engine(self) -> None:
        """Stop the engine's compiled-graph switch and a build in progress."""
        self._engine.close()


class FrameWorker(EngineControl):
    """Owns the engine, the frame mailbox, the counters and the thread that runs them."""

    def __init__(self, engine: SegmentationEngine, sink: OutputSink, *,
                 clock_ns: Callable[[], int], warn: Callable[[str], None],
                 settings: LiveSettings = LiveSettings()) -> None:
        """
        Prepare a stopped worker.

        ``clock_ns`` returns now on the clock of the camera stamps (ROS time in the node),
        for the stamp-to-output latency; ``warn`` receives throttled problem reports.
        """
        self._engine = engine
        self._sink = sink
        self._clock_ns = clock_ns
        self._problems = ProblemLog(warn)
        self._settings = settings
        self._frames: NewestWins[Frame] = NewestWins()
        self._counts_lock = threading.Lock()
        self._received = self._processed = 0
        self._malformed = self._stamp_backwards = self._failed = 0
        self._implausible_stamps = 0
        self._last_problem = ''
        self._threads = 0
        self._input_rate = RateMeter()
        self._output_rate = RateMeter()
        self._latency = LatencyWindow()
        self._processing = LatencyWindow()  # the worker's own per-frame work: decode to publish
        self._last_stamp_ns = 0
        self._last_header: Any = None
        self._engine_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # Control, from the executor's threads ------------------------------------------------

    @property
    def last_header(self) -> Any:
        """Return the header of the last frame whose outputs went out (None before one)."""
        return self._last_header

    def apply(self, settings: LiveSettings) -> None:
        """Use ``settings`` from the next frame on."""
        self._settings = settings

    def offer(self, message: Any) -> None:
        """Take a camera message; a frame still waiting is replaced (and counted as dropped)."""
        with self._counts_lock:
            self._received += 1
            self._input_rate.tick()
            self._frames.put(Frame(message, time.monotonic_ns()))

    def start(self) -> None:
        """Start the inference thread."""
        self._stop.clear()
        self._frames.reopen()
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
        self._frames.close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._frames.take(timeout=0)

    def swap_engine(self, engine: SegmentationEngine) -> None:
        """Replace the engine between two frames; the old one lets its memory and build go."""
        with self._engine_lock:
            old, self._engine = self._engine, engine
        old.release()
        old.close()

    def snapshot(self) -> WorkerStats:
        """Return the statistics so far, frozen."""
        engine = self._engine
        with self._counts_lock:
            return WorkerStats(
                model=engine.spec.name, device=str(engine.device), precision=engine.precision,
                backend=engine.backend, input_size=tuple(engine.input_size),
                received=self._received, processed=self._processed,
                dropped=self._frames.replaced, malformed=self._malformed,
                stamp_backwards=self._stamp_backwards, failed=self._failed,
                implausible_stamps=self._implausible_stamps,
                last_problem=self._last_problem, input_rate_hz=self._input_rate.rate(),
                output_rate_hz=self._output_rate.rate(),
                latency_median_s=self._latency.percentile(50),
                latency_p95_s=self._latency.percentile(95),
                processing_median_s=self._processing.percentile(50), threads=self._threads,
                runner=engine.describe_runner(),
                compiled_graph=engine.describe_graph())

    # The thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        prepare_inference_thread()  # before this thread's first parallel operation
        self._threads = torch.get_num_threads()
        last_started = -math.inf
        while not self._stop.is_set():
            try:
                # The rate is read afresh on every pass and waited for in short slices, so a
                # new max_rate applies to the next frame, not after the old wait.
                max_rate = self._settings.max_rate
                wait_s = last_started + 1.0 / max_rate - time.monotonic() if max_rate > 0 else 0
                if wait_s > 0:
                    self._stop.wait(min(wait_s, TAKE_TIMEOUT_S))
                    continue
                frame = self._frames.take(TAKE_TIMEOUT_S)
                if frame is None or self._stop.is_set():
                    continue
                last_started = time.monotonic()
                with self._engine_lock:
                    self.process(frame)
            except ImageFormatError as error:
                self._problem('malformed', f'dropped a malformed frame: {error}')
            except Exception as error:  # noqa: B902 - nothing may end the thread
                if self._sink.closed():
                    return  # shut down under a frame in flight: nothing left to publish to
                self._problem('failed', f'frame failed: {type(error).__name__}: {error}')

    def _problem(self, counter: str, text: str) -> None:
        with self._counts_lock:
            setattr(self, f'_{counter}', getattr(self, f'_{counter}') + 1)
            self._last_problem = text
        try:
            self._problems.warning(text)
        except Exception:  # noqa: B902 - a failing log must not end the thread; it is counted
            pass

    def process(self, frame: Frame) -> None:
        """Decode, segment and hand on one frame (the thread's work; callable in tests)."""
        started = time.monotonic()
        settings = self._settings
        message = frame.message
        stamp = stamp_ns(message.header)
        if stamp and stamp < self._last_stamp_ns:
            self._problem('stamp_backwards', f'dropped a frame whose stamp went back in time '
                                             f'({stamp} ns < last {self._last_stamp_ns} ns)')
            # Follow the new clock so a camera that restarted loses one frame, not all.
            self._last_stamp_ns = stamp
            return
        self._last_stamp_ns = stamp
        image = decode_message(message, max_pixels=settings.max_pixels)
        outputs = run_frame(self._engine, image, request_for(settings.request, self._sink.wants))
        self._sink.publish(message.header, outputs, image.pixels.shape[:2])
        self._last_header = message.header
        latency_s = ((self._clock_ns() - stamp) if stamp
                     else (time.monotonic_ns() - frame.received_ns)) / NS_PER_S
        plausible = -MAX_STAMP_LEAD_S <= latency_s <= MAX_STAMP_AGE_S
        with self._counts_lock:
            self._processed += 1
            self._output_rate.tick()
            if plausible:
                self._latency.add(latency_s)
            else:
                self._implausible_stamps += 1
            self._processing.add(time.monotonic() - started)
        if not plausible:
            self._problems.warning(f'frame stamp is {latency_s:,.1f} s from the clock; its '
                                   'latency is left out of the statistics (camera clock?)')
