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

"""The inference worker and its parts without ROS: mailbox, rates, problems, diagnostics."""

from dataclasses import replace
import math
import threading
import time
from types import SimpleNamespace
from typing import Any, Optional

import pytest
from worker_helpers import RecordingSink, SIZE, small_engine

from espnet_ros.imaging.pipeline import OutputRequest
from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.streaming.diagnostics import HEALTHY, Level, NOT_CONFIGURED, summarize, THREADS_KEY
from espnet_ros.streaming.handoff import NewestWins
from espnet_ros.streaming.problems import ProblemLog
from espnet_ros.streaming.stats import LatencyWindow, percentile, RateMeter
from espnet_ros.streaming.worker import (Frame, FrameWorker, LiveSettings, NS_PER_S, stamp_ns,
                                         WorkerStats)

CAMERA = (48, 40)  # camera frames, height x width


@pytest.fixture(scope='module')
def engine() -> SegmentationEngine:
    return small_engine()


def message(stamp_s: float, *, encoding: str = 'rgb8', height: int = CAMERA[0],
            width: int = CAMERA[1], data: Optional[bytes] = None) -> SimpleNamespace:
    """Return an object with sensor_msgs/Image's fields, as rosbags or rclpy would give."""
    sec = int(stamp_s)
    header = SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=int((stamp_s - sec) * 1e9)),
                             frame_id='camera')
    pixels = data if data is not None else bytes(height * width * 3)
    return SimpleNamespace(header=header, encoding=encoding, height=height, width=width,
                           step=width * 3, data=pixels, is_bigendian=0)


def worker_for(engine: SegmentationEngine, sink: RecordingSink, warnings: list,
               now_s: float = 10.0, **settings: Any) -> FrameWorker:
    return FrameWorker(engine, sink, clock_ns=lambda: int(now_s * NS_PER_S),
                       warn=warnings.append, settings=LiveSettings(**settings))


def test_newest_wins_replaces_and_counts() -> None:
    box: NewestWins[int] = NewestWins()
    assert box.put(1) is False
    assert box.put(2) is True and box.put(3) is True
    assert box.take(timeout=0) == 3 and box.replaced == 2
    assert box.take(timeout=0) is None
    box.close()
    assert box.take(timeout=10) is None  # closed: never waits
    box.reopen()
    threading.Timer(0.05, box.put, args=(4,)).start()
    assert box.take(timeout=30) == 4  # reopened: waits for the next item


def test_rate_meter_counts_events_in_its_window() -> None:
    meter = RateMeter(window_s=5.0)
    for second in range(11):
        meter.tick(now=100.0 + second * 0.5)  # 2 Hz for 5 s
    assert meter.rate(now=105.0) == pytest.approx(2.0)
    assert meter.rate(now=200.0) == 0.0  # all events left the window


def test_latency_window_keeps_the_newest_and_percentile_is_nan_when_empty() -> None:
    window = LatencyWindow(size=3)
    assert math.isnan(window.percentile(50))
    for value in (9.0, 1.0, 2.0, 3.0):
        window.add(value)
    assert window.percentile(100) == 3.0 and window.percentile(50) == 2.0
    assert math.isnan(percentile([], 50)) and percentile([1.0, 3.0], 50) == 2.0


def test_problem_log_throttles_each_kind_on_its_own() -> None:
    said: list[str] = []
    now = [0.0]
    log = ProblemLog(said.append, period_s=5.0, monotonic=lambda: now[0])
    log.warning("bad encoding 'a1'")
    log.warning("bad encoding 'b2'")  # same kind: counted only
    log.warning('data is 3 bytes, expected 12')  # another kind: said at once
    now[0] = 6.0
    log.warning("bad encoding 'c3'")
    assert said == ["bad encoding 'a1'", 'data is 3 bytes, expected 12',
                    "bad encoding 'c3' (1 more like it since the last such warning)"]


def test_worker_publishes_the_frame_with_its_header(engine: SegmentationEngine) -> None:
    sink, warnings = RecordingSink(), []
    worker = worker_for(engine, sink, warnings, now_s=100.25)
    frame = message(100.0)
    worker.process(Frame(frame, 0))
    header, outputs, camera_size = sink.published[0]
    assert header is frame.header and camera_size == CAMERA
    assert outputs.labels.shape == CAMERA and outputs.color is None and outputs.overlay is None
    stats = worker.snapshot()
    assert stats.processed == 1 and stats.latency_median_s == pytest.approx(0.25)
    assert worker.last_header is frame.header and not warnings


def test_outputs_nobody_takes_are_not_rendered(engine: SegmentationEngine) -> None:
    request = OutputRequest(color=True, overlay=True, confidence=True)
    quiet = RecordingSink(wanted={'labels'})
    worker_for(engine, quiet, [], request=request).process(Frame(message(1.0), 0))
    listened = RecordingSink(wanted={'labels', 'overlay', 'confidence'})
    worker_for(engine, listened, [], request=request).process(Frame(message(1.0), 0))
    rendered = listened.published[0][1]
    assert quiet.published[0][1].overlay is None and quiet.published[0][1].confidence is None
    assert rendered.overlay is not None and rendered.confidence is not None
    assert rendered.color is None  # asked for, but nobody listens


def wait_for(condition: Any, what: str) -> None:
    """Wait until ``condition()`` holds; generous, as the machine may be busy."""
    for _ in range(1200):
        if condition():
            return
        threading.Event().wait(0.05)
    raise AssertionError(f'timed out waiting for {what}')


def test_thread_takes_the_newest_frame_and_counts_the_rest(engine: SegmentationEngine) -> None:
    sink = RecordingSink()
    worker = worker_for(engine, sink, [])
    for stamp in (1.0, 2.0, 3.0):  # all waiting before the thread starts
        worker.offer(message(stamp))
    worker.start()
    try:
        wait_for(lambda: sink.published, 'a published frame')
    finally:
        worker.stop(timeout=60)
    assert [stamp_ns(header) for header, _, _ in sink.published] == [3 * NS_PER_S]
    stats = worker.snapshot()
    assert (stats.received, stats.processed, stats.dropped) == (3, 1, 2)


def test_bad_frames_are_dropped_counted_and_warned(engine: SegmentationEngine) -> None:
    sink, warnings = RecordingSink(), []
    worker = worker_for(engine, sink, warnings, max_pixels=CAMERA[0] * CAMERA[1])
    bad_frames = (message(1.0, encoding='32FC1'), message(2.0, data=b'\0' * 5),
                  message(3.0, height=CAMERA[0] * 2, data=bytes(CAMERA[0] * CAMERA[1] * 6)))
    worker.start()
    try:
        for count, bad in enumerate(bad_frames, start=1):
            worker.offer(bad)  # one at a time, so that none replaces another
            wait_for(lambda: worker.snapshot().malformed == count, f'{count} malformed')
        worker.offer(message(4.0))
        wait_for(lambda: worker.snapshot().processed == 1, 'the good frame')
    finally:
        worker.stop(timeout=60)
    stats = worker.snapshot()
    assert stats.malformed == 3 and stats.processed == 1 and stats.failed == 0
    assert 'more than the limit' in stats.last_problem
    assert any('32FC1' in text for text in warnings)
    assert len(sink.published) == 1


def test_stamp_going_backwards_drops_one_frame_and_follows(engine: SegmentationEngine) -> None:
    sink, warnings = RecordingSink(), []
    worker = worker_for(engine, sink, warnings)
    for stamp in (5.0, 1.0, 2.0):
        worker.process(Frame(message(stamp), 0))
    assert [stamp_ns(header) // NS_PER_S for header, _, _ in sink.published] == [5, 2]
    assert worker.snapshot().stamp_backwards == 1 and 'back in time' in warnings[0]


def test_settings_take_effect_at_the_next_frame(engine: SegmentationEngine) -> None:
    sink = RecordingSink(wanted={'labels', 'color'})
    worker = worker_for(engine, sink, [])
    worker.process(Frame(message(1.0), 0))
    worker.apply(LiveSettings(request=OutputRequest(color=True, output_resolution='network')))
    worker.process(Frame(message(2.0), 0))
    first, second = (outputs for _, outputs, _ in sink.published)
    assert first.color is None and first.labels.shape == CAMERA
    assert second.color is not None and second.labels.shape == (SIZE[1], SIZE[0])


def stats(**changes: Any) -> WorkerStats:
    base = WorkerStats(model='m', device='cpu', precision='fp32', backend='torch',
                       input_size=(64, 32), received=10, processed=8, dropped=2, malformed=0,
                       stamp_backwards=0, failed=0, implausible_stamps=0, last_problem='',
                       input_rate_hz=10.0,
                       output_rate_hz=8.0, latency_median_s=0.05, latency_p95_s=0.08,
                       processing_median_s=0.04)
    return replace(base, **changes)


def test_diagnostics_are_a_function_of_two_snapshots() -> None:
    assert summarize(None, None).level == Level.WARN
    assert summarize(None, None).message == NOT_CONFIGURED
    quiet = summarize(stats(), stats())
    assert quiet.level == Level.OK and quiet.message == HEALTHY
    values = dict(quiet.values)
    assert values['latency median (ms)'] == '50.0'
    assert values['frames dropped (newer frame arrived)'] == '2'
    assert dict(summarize(None, stats(threads=3)).values)[THREADS_KEY] == '3'
    bad = summarize(stats(), stats(malformed=2, failed=1, last_problem='x'))
    assert bad.level == Level.WARN and bad.message.startswith('3 frames rejected')
    # The same counts a period later: nothing new, OK again.
    later = stats(malformed=2, failed=1, last_problem='x')
    assert summarize(later, later).level == Level.OK
    building = summarize(later, later, reloading='espnet_p2q8_cityscapes, torch-compile on cpu')
    assert building.level == Level.OK and building.message.startswith('reloading (espnet')


def test_implausible_stamps_stay_out_of_the_latency_and_are_counted(
        engine: SegmentationEngine) -> None:
    sink, warnings = RecordingSink(), []
    now_s = 2_000_000_000.0  # 2033
    worker = worker_for(engine, sink, warnings, now_s=now_s)
    for stamp in (1.0, now_s - 0.25, now_s - 0.25 + 1e-3, now_s + 3600.0):  # 1970, good, future
        worker.process(Frame(message(stamp), 0))
    snapshot = worker.snapshot()
    assert snapshot.processed == 4 and snapshot.implausible_stamps == 2
    assert snapshot.latency_p95_s == pytest.approx(0.25, abs=2e-3)
    assert 'left out of the statistics' in warnings[0]
    assert dict(summarize(None, snapshot).values)[
        'frames with implausible stamps (not in latency)'] == '2'


def test_a_new_max_rate_applies_to_the_next_frame(engine: SegmentationEngine) -> None:
    """A frame every 10 s, then unlimited: the next frame must not wait out the 10 s."""
    sink = RecordingSink()
    worker = worker_for(engine, sink, [], max_rate=0.1)
    worker.start()
    try:
        worker.offer(message(1.0))
        deadline = time.monotonic() + 60.0
        while not sink.published and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(sink.published) == 1
        worker.apply(LiveSettings(max_rate=0.0))
        changed = time.monotonic()
        worker.offer(message(2.0))
        # Under the old setting this frame would wait until 10 s after the first.
        while len(sink.published) < 2 and time.monotonic() - changed < 8.0:
            time.sleep(0.01)
        assert len(sink.published) == 2, 'the frame waited out the old max_rate'
    finally:
        worker.stop()
