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
Several cameras on one engine: per-camera state, and the thread that runs them batched; no ROS.

Each camera is a :class:`CameraChannel`: its output writer, its counters and its latency
window. A :class:`~espnet_ros.streaming.scheduler.BatchScheduler` holds each camera's newest
frame and says which frames go together; :class:`MultiCameraWorker` decodes them (a bad frame
is dropped and counted for its own camera only), runs them through the engine as one batch,
and hands each camera's outputs to its own writer, under its own header and at its own size.
It offers the node what :class:`~espnet_ros.streaming.worker.FrameWorker` offers for one
camera: start, stop, settings, engine swap, statistics.
"""

from collections import Counter
from dataclasses import dataclass
import math
import threading
import time
from typing import Any, Callable, Mapping, Optional

import torch

from espnet_ros.imaging.codec import decode_message, ImageFormatError
from espnet_ros.imaging.pipeline import run_frames
from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.runtime.process import prepare_inference_thread
from espnet_ros.streaming.outputs import request_for
from espnet_ros.streaming.problems import ProblemLog
from espnet_ros.streaming.scheduler import BatchScheduler, BatchSettings
from espnet_ros.streaming.stats import LatencyWindow, RateMeter
from espnet_ros.streaming.worker import (EngineControl, Frame, LiveSettings, MAX_STAMP_AGE_S,
                                         MAX_STAMP_LEAD_S, NS_PER_S, OutputSink, stamp_ns,
                                         TAKE_TIMEOUT_S, WorkerStats)

# A camera is stale once silent for this many of its frame periods, and at least STALE_MIN_S.
STALE_PERIODS = 3.0
STALE_MIN_S = 2.0
P99 = 99
# The per-camera counts that add up to the totals.
COUNTERS = ('received', 'processed', 'malformed', 'stamp_backwards', 'failed',
            'implausible_stamps')


def stale_after_s(period_s: float) -> float:
    """Return how long a camera with frame period ``period_s`` may be silent before stale."""
    return max(STALE_MIN_S, STALE_PERIODS * period_s) if math.isfinite(period_s) else (
        STALE_MIN_S)


class CameraChannel:
    """One camera's output writer and statistics (its frames wait in the scheduler)."""

    def __init__(self, name: str, sink: OutputSink, problems: ProblemLog) -> None:
        """Count ``name``'s frames; its outputs go to ``sink``, its problems to ``problems``."""
        self.name = name
        self.sink = sink
        self._problems = problems
        self.lock = threading.RLock()  # snapshots read under it, summed across cameras
        self.received = self.processed = 0
        self.malformed = self.stamp_backwards = self.failed = self.implausible_stamps = 0
        self.last_problem = ''
        self.input_rate = RateMeter()
        self.output_rate = RateMeter()
        self.latency = LatencyWindow()
        self.processing = LatencyWindow()
        self.last_stamp_ns = 0
        self.last_header: Any = None

    def problem(self, counter: str, text: str) -> None:
        """Count a rejected frame of this camera under ``counter`` and warn (throttled)."""
        text = f'camera {self.name}: {text}'
        with self.lock:
            setattr(self, counter, getattr(self, counter) + 1)
            self.last_problem = text
        self.warn(text)

    def warn(self, text: str) -> None:
        """Warn about this camera (throttled per kind of problem)."""
        if not text.startswith('camera '):
            text = f'camera {self.name}: {text}'
        try:
            self._problems.warning(text)
        except Exception:  # noqa: B902 - a failing log must not end the thread; it is counted
            pass

    def done(self, latency_s: Optional[float], processing_s: float) -> None:
        """Count a processed frame; ``latency_s`` None: its stamp was implausible."""
        with self.lock:
            self.processed += 1
            self.output_rate.tick()
            if latency_s is None:
                self.implausible_stamps += 1
            else:
                self.latency.add(latency_s)
            self.processing.add(processing_s)


@dataclass(frozen=True)
class CameraStats:
    """One camera's snapshot: the single-camera figures, the p99 latency, staleness."""

    stats: WorkerStats
    latency_p99_s: float
    silent_s: float  # since its last frame arrived (inf: none yet)
    stale: bool


@dataclass(frozen=True)
class MultiStats:
    """A snapshot of a several-camera worker: totals, each camera, batch sizes run."""

    total: WorkerStats
    total_latency_p99_s: float
    cameras: dict[str, CameraStats]
    batch_sizes: dict[int, int]  # frames in a batch: batches run of that size
    max_batch: int


class MultiCameraWorker(EngineControl):
    """Runs several cameras' newest frames through one engine, batched (see the module)."""

    def __init__(self, engine: SegmentationEngine, sinks: Mapping[str, OutputSink], *,
                 clock_ns: Callable[[], int], warn: Callable[[str], None],
                 settings: LiveSettings = LiveSettings(),
                 batch: BatchSettings = BatchSettings()) -> None:
        """
        Prepare a stopped worker for the cameras of ``sinks`` (name: output writer).

        ``clock_ns`` is now on the camera stamps' clock; ``warn`` gets throttled problems.
        ``settings.max_rate`` is ignored: ``batch.max_rate`` applies it per camera.
        """
        self._engine = engine
        self._clock_ns = clock_ns
        problems = ProblemLog(warn)
        self._channels = {name: CameraChannel(name, sink, problems)
                          for name, sink in sinks.items()}
        self._scheduler: BatchScheduler[Frame] = BatchScheduler(list(sinks), batch)
        self._settings = settings
        self._batch = batch
        self._batch_sizes: Counter[int] = Counter()
        self._total_latency = LatencyWindow()
        self._engine_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._threads = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # Control, from the executor's threads ----------------------------------------------

    @property
    def names(self) -> list[str]:
        """Return the cameras' names, in the order given."""
        return list(self._channels)

    def sink(self, name: str) -> OutputSink:
        """Return camera ``name``'s output writer."""
        return self._channels[name].sink

    def last_header(self, name: str) -> Any:
        """Return the header of camera ``name``'s last frame out (None before one)."""
        return self._channels[name].last_header

    def apply(self, settings: LiveSettings, batch: BatchSettings) -> None:
        """Use ``settings`` and ``batch`` from the next batch on."""
        self._settings = settings
        self._batch = batch
        self._scheduler.apply(batch)

    def offer(self, name: str, message: Any) -> None:
        """Take camera ``name``'s message; its frame still waiting is replaced (dropped)."""
        channel = self._channels[name]
        with channel.lock:
            channel.received += 1
            channel.input_rate.tick()
        self._scheduler.put(name, Frame(message, time.monotonic_ns()))

    def offer_to(self, name: str) -> Callable[[Any], None]:
        """Return the callback that offers camera ``name``'s messages."""
        return lambda message: self.offer(name, message)

    def start(self) -> None:
        """Start the inference thread."""
        self._stop.clear()
        self._scheduler.reopen()
        self._thread = threading.Thread(target=self._run, name='segmenter-inference',
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop the thread after the batch in flight, waiting ``timeout`` s at most."""
        self._stop.set()
        self._scheduler.close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._scheduler.clear()

    def swap_engine(self, engine: SegmentationEngine) -> None:
        """Replace the engine between two batches; the old one lets its memory and build go."""
        with self._engine_lock:
            old, self._engine = self._engine, engine
        old.release()
        old.close()

    def snapshot(self) -> MultiStats:
        """Return the statistics so far, frozen: totals, each camera, batch sizes."""
        engine = self._engine
        cameras = {}
        for name, channel in self._channels.items():
            silent = self._scheduler.silent_for(name)
            with channel.lock:
                stats = self._stats(engine, [channel], self._scheduler.replaced(name),
                                    channel.latency)
                p99 = channel.latency.percentile(P99)
            cameras[name] = CameraStats(
                stats, p99, silent, silent > stale_after_s(self._scheduler.period(name)))
        with self._stats_lock:
            total = self._stats(engine, list(self._channels.values()),
                                sum(camera.stats.dropped for camera in cameras.values()),
                                self._total_latency)
            total_p99 = self._total_latency.percentile(P99)
            sizes = dict(sorted(self._batch_sizes.items()))
        return MultiStats(total, total_p99, cameras, sizes,
                          self._batch.limit(len(self._channels)))

    def _stats(self, engine: SegmentationEngine, channels: list[CameraChannel], dropped: int,
               latency: LatencyWindow) -> WorkerStats:
        """Return the single-camera statistics summed over ``channels``."""
        counts = Counter()
        rates = [0.0, 0.0]
        problems = []
        processing = LatencyWindow()
        for channel in channels:
            with channel.lock:
                for name in COUNTERS:
                    counts[name] += getattr(channel, name)
                rates[0] += channel.input_rate.rate()
                rates[1] += channel.output_rate.rate()
                samples = list(channel.processing.samples)
                if channel.last_problem:
                    problems.append(channel.last_problem)
            for sample in samples:
                processing.add(sample)
        return WorkerStats(
            model=engine.spec.name, device=str(engine.device), precision=engine.precision,
            backend=engine.backend, input_size=tuple(engine.input_size), dropped=dropped,
            last_problem=problems[-1] if problems else '', input_rate_hz=rates[0],
            output_rate_hz=rates[1], latency_median_s=latency.percentile(50),
            latency_p95_s=latency.percentile(95),
            processing_median_s=processing.percentile(50), threads=self._threads,
            runner=engine.describe_runner(), compiled_graph=engine.describe_graph(),
            **{name: counts[name] for name in COUNTERS})

    # The thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        prepare_inference_thread()  # before this thread's first parallel operation
        self._threads = torch.get_num_threads()
        while not self._stop.is_set():
            batch = self._scheduler.next_batch(TAKE_TIMEOUT_S)
            if not batch or self._stop.is_set():
                continue
            try:
                with self._engine_lock:
                    self.process(batch)
            except Exception as error:  # noqa: B902 - nothing may end the thread
                if all(channel.sink.closed() for channel in self._channels.values()):
                    return  # shut down under a batch in flight: nothing left to publish to
                for name, _ in batch:
                    self._channels[name].problem(
                        'failed', f'frame failed: {type(error).__name__}: {error}')

    def _decode(self, channel: CameraChannel, frame: Frame) -> Optional[Any]:
        """Return the frame's decoded image, or None when dropped (counted for its camera)."""
        header = frame.message.header
        stamp = stamp_ns(header)
        if stamp and stamp < channel.last_stamp_ns:
            channel.problem('stamp_backwards', f'dropped a frame whose stamp went back in time '
                                               f'({stamp} ns < last {channel.last_stamp_ns} ns)')
            channel.last_stamp_ns = stamp  # a camera that restarted loses one frame, not all
            return None
        channel.last_stamp_ns = stamp
        try:
            return decode_message(frame.message, max_pixels=self._settings.max_pixels)
        except ImageFormatError as error:
            channel.problem('malformed', f'dropped a malformed frame: {error}')
        except Exception as error:  # noqa: B902 - one camera's bad frame spares the others
            channel.problem('failed', f'frame failed: {type(error).__name__}: {error}')
        return None

    def process(self, batch: list[tuple[str, Frame]]) -> None:
        """Decode, segment as one batch and hand on each camera's frame (callable in tests)."""
        started = time.monotonic()
        settings = self._settings
        taken = []
        for name, frame in batch:
            channel = self._channels[name]
            image = self._decode(channel, frame)
            if image is not None:
                taken.append((channel, frame, image))
        if not taken:
            return
        requests = [request_for(settings.request, channel.sink.wants)
                    for channel, _, _ in taken]
        outputs = run_frames(self._engine, [image for _, _, image in taken], requests)
        with self._stats_lock:
            self._batch_sizes[len(taken)] += 1
        for (channel, frame, image), frame_outputs in zip(taken, outputs):
            header = frame.message.header
            try:
                channel.sink.publish(header, frame_outputs, image.pixels.shape[:2])
            except Exception as error:  # noqa: B902 - one camera's outputs spare the others
                if channel.sink.closed():
                    continue
                channel.problem('failed', f'publishing failed: {type(error).__name__}: {error}')
                continue
            channel.last_header = header
            self._count(channel, frame, started)

    def _count(self, channel: CameraChannel, frame: Frame, started: float) -> None:
        """Count one frame out: its stamp-to-output latency, and the batch's work so far."""
        stamp = stamp_ns(frame.message.header)
        latency_s = ((self._clock_ns() - stamp) if stamp
                     else (time.monotonic_ns() - frame.received_ns)) / NS_PER_S
        plausible = -MAX_STAMP_LEAD_S <= latency_s <= MAX_STAMP_AGE_S
        channel.done(latency_s if plausible else None, time.monotonic() - started)
        if plausible:
            with self._stats_lock:
                self._total_latency.add(latency_s)
        else:
            channel.warn(f'frame stamp is {latency_s:,.1f} s from the clock; its latency is '
                         'left out of the statistics (camera clock?)')
