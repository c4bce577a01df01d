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


"""``espnet-ros-live`` says what the node did with the camera's frames."""

from espnet_ros.streaming.diagnostics import DROPPED_KEY, PROCESSED_KEY, RECEIVED_KEY
from espnet_ros.tools.live_run import drop_line, window_counts


def test_drop_line_reports_the_node_counts() -> None:
    """Frames taken, processed and dropped for a newer one, from the node's diagnostics."""
    results = {'node_frames_received': 80, 'node_frames_processed': 60,
               'node_frames_dropped': 20}
    assert drop_line(results) == ('the node took 80 camera frames, processed 60 and dropped '
                                  '20 (25%) because a newer frame arrived first')


def test_drop_line_says_the_player_outruns_the_machine_by_design() -> None:
    """With drops, the line says why: the player is faster, the node keeps the newest frame."""
    results = {'node_frames_received': 80, 'node_frames_processed': 60,
               'node_frames_dropped': 20, 'camera_rate_hz': 10.0,
               'node_processing_median_ms': 130.0}
    line = drop_line(results)
    assert 'the player sends 10 Hz, faster than this machine segments' in line
    assert 'keeps only the newest frame by design' in line


def test_drop_line_puts_a_few_drops_of_a_fast_node_down_to_jitter() -> None:
    """A node whose work fits the camera's period drops frames only when two come close."""
    results = {'node_frames_received': 302, 'node_frames_processed': 301,
               'node_frames_dropped': 2, 'camera_rate_hz': 10.0,
               'node_processing_median_ms': 32.7}
    line = drop_line(results)
    assert 'faster than this machine segments' not in line
    assert ("its median work on a frame (32.7 ms) is shorter than the camera's period (100 "
            'ms), so these frames arrived while it was still busy') in line
    assert 'keeps only the newest frame by design' in line


def test_drop_line_names_no_cause_it_cannot_tell() -> None:
    """Without the node's own work time, the line neither blames the machine nor the timing."""
    results = {'node_frames_received': 80, 'node_frames_processed': 60,
               'node_frames_dropped': 20, 'camera_rate_hz': 10.0,
               'node_processing_median_ms': float('nan')}
    line = drop_line(results)
    assert 'faster than' not in line and 'shorter than' not in line
    assert line.endswith('(no queue: the labels describe the scene as it is now)')


def test_drop_line_without_diagnostics() -> None:
    """No diagnostics: the counts are unknown, and the line says so instead of zeros."""
    results = {'node_frames_received': None, 'node_frames_processed': None,
               'node_frames_dropped': None}
    assert 'unknown' in drop_line(results)


def test_the_window_counts_leave_out_the_frames_before_it() -> None:
    """Frames dropped while the node served eager, before its graph, are not the window's."""
    before = {RECEIVED_KEY: 500, PROCESSED_KEY: 490, DROPPED_KEY: 10}
    after = {RECEIVED_KEY: 610, PROCESSED_KEY: 600, DROPPED_KEY: 10}
    assert window_counts(before, after) == {RECEIVED_KEY: 110, PROCESSED_KEY: 110,
                                            DROPPED_KEY: 0}
    assert window_counts({}, after) == after
    assert window_counts(before, {}) == dict.fromkeys(after)
