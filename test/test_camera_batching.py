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
Several cameras on one engine, without ROS: the batch scheduler, the worker, the diagnostics.

The scheduler's waits are checked by what comes out (which cameras, in which order, whether
a frame that is due joins the batch), with waits long enough that a scheduler that waited
where it should not would stand out on a busy machine too.
"""

from pathlib import Path
import threading
import time
from types import SimpleNamespace
from typing import Any, Optional

import cv2
import numpy as np
import pytest
from worker_helpers import RecordingSink, SIZE, small_engine

from espnet_ros.imaging.pipeline import OutputRequest
from espnet_ros.ros.parameter_table import (check_parameter, graph_batch, NodeParameters,
                                            typed_value)
from espnet_ros.runtime.engine import EngineConfig, SegmentationEngine
from espnet_ros.runtime.options import Output
from espnet_ros.streaming.camera_diagnostics import (BATCH_SIZES_KEY, STALE, STALE_KEY,
                                                     summarize_cameras, TOTAL)
from espnet_ros.streaming.camera_names import cameras_error, MAX_CAMERAS
from espnet_ros.streaming.cameras import MultiCameraWorker
from espnet_ros.streaming.diagnostics import Level
from espnet_ros.streaming.scheduler import BatchScheduler, BatchSettings
from espnet_ros.streaming.worker import Frame, LiveSettings, NS_PER_S
from espnet_ros.tools import batch_bench
from espnet_ros.zoo.registry import get_spec

# Three cameras of different sizes (height, width) and frame ids.
CAMERAS = {'front': ((48, 40), 'front_link'), 'left': ((30, 90), 'left_link'),
           'rear': ((64, 64), 'rear_link')}
LONG_WAIT_S = 5.0   # a wait the scheduler must not sit through
SHORT_S = 0.05


# The scheduler -----------------------------------------------------------------------------

def test_batch_takes_every_ready_camera_up_to_max_batch_newest_frame_each() -> None:
    scheduler: BatchScheduler[int] = BatchScheduler(['a', 'b', 'c'], BatchSettings(
        batch_wait_s=0))
    assert scheduler.put('a', 1) is False
    assert scheduler.put('a', 2) is True  # newest wins, the older one counted
    scheduler.put('c', 3)
    assert scheduler.next_batch(timeout=1.0) == [('a', 2), ('c', 3)]
    assert scheduler.replaced('a') == 1 and scheduler.replaced('c') == 0
    assert scheduler.next_batch(timeout=0) == []
    scheduler.apply(BatchSettings(max_batch=2, batch_wait_s=0))
    for name, item in (('a', 4), ('b', 5), ('c', 6)):
        scheduler.put(name, item)
    first = scheduler.next_batch(timeout=1.0)
    assert [name for name, _ in first] == ['b', 'a']  # b was never served: first in line
    assert scheduler.next_batch(timeout=1.0) == [('c', 6)]


def test_flooding_cameras_cannot_starve_a_slow_one() -> None:
    """With one frame a batch, a camera with a frame is served within one round of the line."""
    scheduler: BatchScheduler[int] = BatchScheduler(['flood1', 'flood2', 'slow'],
                                                    BatchSettings(max_batch=1, batch_wait_s=0))
    served = []
    for round_number in range(30):
        scheduler.put('flood1', round_number)
        scheduler.put('flood2', round_number)
        if round_number % 5 == 0:
            scheduler.put('slow', round_number)
        served += [name for name, _ in scheduler.next_batch(timeout=1.0)]
    assert served.count('slow') == 6  # every slow frame, none replaced
    assert scheduler.replaced('slow') == 0
    assert abs(served.count('flood1') - served.count('flood2')) <= 1


def test_a_batch_waits_for_a_camera_whose_frame_is_due() -> None:
    scheduler: BatchScheduler[int] = BatchScheduler(['a', 'b'], BatchSettings(
        batch_wait_s=LONG_WAIT_S))
    for item in range(3):  # b has a period of about SHORT_S
        scheduler.put('b', item)
        scheduler.next_batch(timeout=1.0)
        time.sleep(SHORT_S)
    scheduler.put('a', 10)
    threading.Timer(SHORT_S / 2, scheduler.put, args=('b', 11)).start()
    assert sorted(scheduler.next_batch(timeout=1.0)) == [('a', 10), ('b', 11)]


def test_a_silent_camera_holds_nobody_back() -> None:
    scheduler: BatchScheduler[int] = BatchScheduler(['a', 'b'], BatchSettings(
        batch_wait_s=LONG_WAIT_S))
    for item in range(3):
        scheduler.put('b', item)
        scheduler.next_batch(timeout=1.0)
        time.sleep(SHORT_S)
    time.sleep(10 * SHORT_S)  # b is now overdue by several of its periods: silent
    scheduler.put('a', 1)
    started = time.monotonic()
    assert scheduler.next_batch(timeout=1.0) == [('a', 1)]
    assert time.monotonic() - started < LONG_WAIT_S


def test_batch_wait_zero_never_waits_for_a_due_camera() -> None:
    scheduler: BatchScheduler[int] = BatchScheduler(['a', 'b'], BatchSettings(batch_wait_s=0))
    for item in range(3):
        scheduler.put('b', item)
        scheduler.next_batch(timeout=1.0)
    scheduler.put('a', 1)
    assert scheduler.next_batch(timeout=1.0) == [('a', 1)]


def test_max_rate_applies_per_camera() -> None:
    scheduler: BatchScheduler[int] = BatchScheduler(['a', 'b'], BatchSettings(
        batch_wait_s=0, max_rate=1 / LONG_WAIT_S))
    scheduler.put('a', 1)
    assert scheduler.next_batch(timeout=1.0) == [('a', 1)]
    scheduler.put('a', 2)  # not a's turn for LONG_WAIT_S: kept, b goes ahead
    scheduler.put('b', 3)
    assert scheduler.next_batch(timeout=1.0) == [('b', 3)]
    assert scheduler.next_batch(timeout=SHORT_S) == []
    scheduler.apply(BatchSettings(batch_wait_s=0))  # the limit lifted: a's newest frame goes
    assert scheduler.next_batch(timeout=1.0) == [('a', 2)]


def test_close_wakes_a_waiting_batch_and_reopen_waits_again() -> None:
    scheduler: BatchScheduler[int] = BatchScheduler(['a'])
    threading.Timer(SHORT_S, scheduler.close).start()
    started = time.monotonic()
    assert scheduler.next_batch(timeout=LONG_WAIT_S) == []
    assert time.monotonic() - started < LONG_WAIT_S
    scheduler.reopen()
    scheduler.put('a', 1)
    scheduler.clear()
    assert scheduler.next_batch(timeout=0) == []
    with pytest.raises(ValueError, match='at least one camera'):
        BatchScheduler([])


# Camera names ------------------------------------------------------------------------------

@pytest.mark.parametrize('names, reason', [
    (['front', 'front'], "'front' is named twice"),
    (['front', ''], 'is empty'),
    (['/front'], 'must be relative'),
    (['~front'], 'must be relative'),
    (['2nd'], 'not a valid ROS name'),
    (['front camera'], 'not a valid ROS name'),
    (['front//left'], 'not a valid ROS name'),
    (['front__left'], 'not a valid ROS name'),
    ([f'c{index}' for index in range(MAX_CAMERAS + 1)], f'at most {MAX_CAMERAS}'),
])
def test_bad_camera_names_are_refused_with_the_reason(names: list, reason: str) -> None:
    assert reason in cameras_error(names)
    assert reason in check_parameter('cameras', names)


def test_good_camera_names_pass_and_are_held_as_a_tuple() -> None:
    assert cameras_error(['front', 'rear/left', '_aux2']) is None
    assert check_parameter('cameras', []) is None
    assert 'list of strings' in check_parameter('cameras', 'front')
    assert 'list of strings' in check_parameter('cameras', [1, 2])
    value = typed_value('cameras', ['front', 'rear'])
    assert NodeParameters().with_changes({'cameras': value}).cameras == ('front', 'rear')
    assert NodeParameters().cameras == ()


# The worker, with a real engine ------------------------------------------------------------

@pytest.fixture(scope='module')
def engine() -> SegmentationEngine:
    return small_engine()


def message(pixels: np.ndarray, frame_id: str, stamp_s: float, *,
            encoding: str = 'rgb8', data: Optional[bytes] = None) -> SimpleNamespace:
    """Return an object with sensor_msgs/Image's fields, as rosbags or rclpy would give."""
    sec = int(stamp_s)
    header = SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=int((stamp_s - sec) * 1e9)),
                             frame_id=frame_id)
    height, width = pixels.shape[:2]
    return SimpleNamespace(header=header, encoding=encoding, height=height, width=width,
                           step=width * 3, data=pixels.tobytes() if data is None else data,
                           is_bigendian=0)


def frames(street_bgr: np.ndarray) -> dict[str, np.ndarray]:
    """Return each camera's RGB frame: the street scene at its own size."""
    return {name: np.ascontiguousarray(cv2.resize(street_bgr, size[::-1])[..., ::-1])
            for name, (size, _) in CAMERAS.items()}


def multi_worker(engine: SegmentationEngine, sinks: dict, warnings: list,
                 **batch: Any) -> MultiCameraWorker:
    return MultiCameraWorker(engine, sinks, clock_ns=lambda: 10 * NS_PER_S,
                             warn=warnings.append,
                             settings=LiveSettings(request=OutputRequest(color=True)),
                             batch=BatchSettings(**batch))


def test_one_batch_gives_each_camera_its_own_header_size_and_single_frame_labels(
        engine: SegmentationEngine, street_bgr: np.ndarray) -> None:
    sinks = {name: RecordingSink() for name in CAMERAS}
    sinks['left'].wanted = {Output.LABELS, Output.COLOR}
    worker = multi_worker(engine, sinks, [])
    pictures = frames(street_bgr)
    worker.process([(name, Frame(message(pictures[name], frame_id, 9.5), 0))
                    for name, (_, frame_id) in CAMERAS.items()])
    for name, ((height, width), frame_id) in CAMERAS.items():
        ((header, outputs, camera_size),) = sinks[name].published
        assert header.frame_id == frame_id and camera_size == (height, width)
        assert outputs.labels.shape == (height, width)
        alone = engine.segment(pictures[name]).labels
        np.testing.assert_array_equal(outputs.labels, alone)
        # Colour only where it is taken; confidence nowhere.
        assert (outputs.color is not None) == (name == 'left') and outputs.confidence is None
    stats = worker.snapshot()
    assert stats.batch_sizes == {3: 1}
    assert stats.total.processed == 3
    assert {name: camera.stats.processed for name, camera in stats.cameras.items()} == (
        dict.fromkeys(CAMERAS, 1))


def test_a_bad_frame_is_counted_for_its_camera_alone(
        engine: SegmentationEngine, street_bgr: np.ndarray) -> None:
    sinks = {name: RecordingSink() for name in CAMERAS}
    warnings: list = []
    worker = multi_worker(engine, sinks, warnings)
    pictures = frames(street_bgr)
    batch = [(name, Frame(message(pictures[name], frame_id, 9.5), 0))
             for name, (_, frame_id) in CAMERAS.items()]
    batch[1] = ('left', Frame(message(pictures['left'], 'left_link', 9.5, data=b'short'), 0))
    for name, frame in batch:
        worker.offer(name, frame.message)  # heard from: not stale
    worker.process(batch)
    batch[1] = ('left', Frame(message(pictures['left'], 'left_link', 9.6,
                                      encoding='32SC4'), 0))
    worker.process(batch[1:2])
    stats = worker.snapshot()
    assert stats.cameras['left'].stats.malformed == 2
    assert stats.cameras['left'].stats.processed == 0
    assert 'camera left' in stats.cameras['left'].stats.last_problem
    for name in ('front', 'rear'):
        assert stats.cameras[name].stats.problems == 0
        assert len(sinks[name].published) == 1
    assert sinks['left'].published == []
    assert stats.batch_sizes == {2: 1}
    assert any('camera left' in text for text in warnings)
    summaries = summarize_cameras(None, stats)
    assert summaries['left'].level == Level.WARN and 'rejected' in summaries['left'].message
    assert summaries['front'].level == Level.OK
    assert summaries[TOTAL].level == Level.WARN


def test_the_thread_serves_every_camera_and_reports_a_silent_one_stale(
        engine: SegmentationEngine, street_bgr: np.ndarray) -> None:
    sinks = {name: RecordingSink() for name in CAMERAS}
    worker = multi_worker(engine, sinks, [])
    pictures = frames(street_bgr)
    worker.start()
    try:
        for index in range(3):
            for name in ('front', 'left'):  # rear never sends
                worker.offer(name, message(pictures[name], CAMERAS[name][1], 9.0 + index))
            deadline = time.monotonic() + 60.0
            while (len(sinks['front'].published) <= index
                   or len(sinks['left'].published) <= index) and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        worker.stop()
    assert len(sinks['front'].published) == 3 and len(sinks['left'].published) == 3
    stats = worker.snapshot()
    assert stats.cameras['rear'].stale and not stats.cameras['front'].stale
    summaries = summarize_cameras(None, stats)
    assert summaries['rear'].level == Level.WARN and summaries['rear'].message.startswith(STALE)
    assert summaries['front'].level == Level.OK
    total = dict(summaries[TOTAL].values)
    assert total[STALE_KEY] == 'rear' and total[BATCH_SIZES_KEY] != 'none yet'
    assert summaries[TOTAL].level == Level.WARN and 'rear' in summaries[TOTAL].message


def test_the_compiled_graph_is_looked_for_at_the_cameras_batch(tmp_path: Path) -> None:
    """A node serving three cameras asks the graph cache for a batch-3 graph."""
    spec = get_spec('espnet_p2q3_cityscapes')
    engine = SegmentationEngine(spec, spec.build(), EngineConfig(
        input_size=SIZE, device='cpu', compile_mode='cached', cache=tmp_path))
    switch = engine.start_background(batch=3)
    try:
        assert switch is not None and switch.entry.key.batch == 3
        assert '-b3-' in switch.entry.key.stem()
    finally:
        engine.close()
    parameters = NodeParameters(cameras=('a', 'b', 'c'))
    assert graph_batch(parameters) == 3
    assert graph_batch(parameters.with_changes({'max_batch': 2})) == 2
    assert graph_batch(NodeParameters()) == 1


def test_batch_bench_times_both_ways_on_the_same_frames(engine: SegmentationEngine) -> None:
    """The in-process batching benchmark runs N mixed-size frames batched and one by one."""
    row = batch_bench.measure(engine, 2, repeats=1)
    assert row['cameras'] == 2
    assert row['batched_fps'] > 0 and row['one_by_one_fps'] > 0
    assert row['batched_over_one_by_one'] == pytest.approx(
        row['batched_fps'] / row['one_by_one_fps'])
    sizes = {frame.pixels.shape[:2] for frame in batch_bench.camera_frames(4)}
    assert len(sizes) == 4  # the cameras' sizes differ
