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
Colour frames and depth images paired by stamp, whichever comes second (no ROS).

The cases of the adversarial round: depth after the colour frame's outputs, depth at
200 Hz beside colour at 5 Hz, one depth image stamped far ahead, an invalid stamp, a depth
image too large, and the bounds that keep memory in check.
"""

from types import SimpleNamespace
from typing import Any

import pytest

from espnet_ros.streaming.pairing import (MAX_WAITING_COLOUR, message_stamp_ns, NS_PER_S,
                                          PairingSettings, StampPairing)

MS = 1_000_000
SIZE = (320, 160)


def depth(stamp_ns: int, size: tuple[int, int] = SIZE, *, sec: Any = None,
          nanosec: Any = None) -> SimpleNamespace:
    """Return a depth message read by its fields, as rclpy's and rosbags' messages are."""
    stamp = SimpleNamespace(sec=stamp_ns // NS_PER_S if sec is None else sec,
                            nanosec=stamp_ns % NS_PER_S if nanosec is None else nanosec)
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp, frame_id='cam'),
                           width=size[0], height=size[1], data=bytes(size[0] * size[1] * 2))


T0 = 1_700_000_000 * NS_PER_S


def test_depth_after_the_colour_outputs_pairs_when_it_comes() -> None:
    pairing = StampPairing(PairingSettings(slop_s=0.02, wait_s=0.5))
    for frame in range(10):
        stamp = T0 + frame * 100 * MS
        now = stamp + 50 * MS  # outputs out 50 ms after the stamp, depth 30 ms later
        assert pairing.add_colour(stamp, frame, now) == []
        refusal, settled = pairing.add_depth(depth(stamp), now + 30 * MS)
        assert refusal is None
        assert [(pair.colour, message_stamp_ns(pair.depth.header)) for pair in settled] == [
            (frame, stamp)]
    assert pairing.expire(T0 + 10 * NS_PER_S) == []


def test_depth_first_pairs_at_once_with_the_nearest_stamp() -> None:
    pairing = StampPairing(PairingSettings(slop_s=0.02, wait_s=0.5))
    for offset_ms in (-15, -5, 0, 5, 15):
        pairing.add_depth(depth(T0 + offset_ms * MS), T0)
    (pair,) = pairing.add_colour(T0 + 1 * MS, 'frame', T0)
    assert message_stamp_ns(pair.depth.header) == T0


def test_depth_at_200_hz_beside_colour_at_5_hz_pairs_every_frame() -> None:
    pairing = StampPairing(PairingSettings(slop_s=0.0, wait_s=0.5))
    paired = []
    colour_period, depth_period = 200 * MS, 5 * MS
    for tick in range(0, 4 * NS_PER_S, depth_period):
        stamp = T0 + tick
        paired += pairing.add_depth(depth(stamp), stamp + 2 * MS)[1]
        # A colour frame's outputs are out 120 ms after its stamp: 24 depth images later.
        if tick >= 120 * MS and (tick - 120 * MS) % colour_period == 0:
            colour = stamp - 120 * MS
            paired += pairing.add_colour(colour, colour, stamp)
        assert pairing.kept() <= 65  # the stamp floor: only depth after the last frame
    assert len(paired) == 20
    assert all(pair.depth is not None and message_stamp_ns(pair.depth.header) == pair.colour
               for pair in paired)


def test_one_depth_stamped_ahead_or_invalid_hides_no_partner() -> None:
    pairing = StampPairing(PairingSettings(slop_s=0.01, wait_s=0.5))
    refusal, _ = pairing.add_depth(depth(T0 + 800 * MS), T0)
    assert refusal is None
    for stamp, sec, nanosec in ((0, None, 2 * NS_PER_S), (0, -5, 0)):
        refusal, settled = pairing.add_depth(depth(stamp, sec=sec, nanosec=nanosec), T0)
        assert 'invalid' in refusal and settled == []
    paired = []
    for frame in range(5):
        stamp = T0 + frame * 100 * MS
        paired += pairing.add_depth(depth(stamp + 5 * MS), stamp)[1]
        paired += pairing.add_colour(stamp, frame, stamp + 10 * MS)
    paired += pairing.expire(T0 + 10 * NS_PER_S)
    assert sorted(pair.colour for pair in paired) == list(range(5))
    assert all(message_stamp_ns(pair.depth.header) == T0 + pair.colour * 100 * MS + 5 * MS
               for pair in paired)


def test_a_frame_without_depth_in_time_expires_after_the_wait() -> None:
    pairing = StampPairing(PairingSettings(slop_s=0.02, wait_s=0.2))
    pairing.add_depth(depth(T0 - 500 * MS), T0)
    assert pairing.add_colour(T0, 'frame', T0) == []
    assert pairing.expire(T0 + 100 * MS) == []
    (pair,) = pairing.expire(T0 + 200 * MS)
    assert (pair.colour, pair.depth) == ('frame', None)


def test_at_the_end_of_the_wait_the_best_depth_within_the_slop_is_taken() -> None:
    """Depth before the stamp, none after it: not settled early, taken when the wait ends."""
    pairing = StampPairing(PairingSettings(slop_s=0.02, wait_s=0.2))
    pairing.add_depth(depth(T0 - 10 * MS), T0)
    assert pairing.add_colour(T0, 'frame', T0) == []
    (pair,) = pairing.expire(T0 + 300 * MS)
    assert message_stamp_ns(pair.depth.header) == T0 - 10 * MS


def test_depth_larger_than_max_pixels_is_refused() -> None:
    pairing = StampPairing(PairingSettings(max_pixels=SIZE[0] * SIZE[1]))
    refusal, _ = pairing.add_depth(depth(T0, (4096, 2048)), T0)
    assert 'depth image 4096x2048 refused' in refusal and 'max_input_pixels' in refusal
    assert pairing.kept() == 0


def test_memory_bound_drops_the_oldest_stamps_and_the_wait_is_bounded() -> None:
    one = SIZE[0] * SIZE[1] * 2
    pairing = StampPairing(PairingSettings(max_bytes=3 * one, wait_s=10.0))
    for frame in range(5):
        pairing.add_depth(depth(T0 + frame * MS), T0)
    assert pairing.kept() == 3 and pairing.evicted == 2
    settled = []
    for frame in range(MAX_WAITING_COLOUR + 1):
        settled += pairing.add_colour(T0 + NS_PER_S + frame, frame, T0)
    assert [(pair.colour, pair.depth) for pair in settled] == [(0, None)]


def test_depth_arrived_longer_ago_than_keep_s_is_dropped() -> None:
    pairing = StampPairing(PairingSettings(keep_s=1.0))
    pairing.add_depth(depth(T0), T0)
    pairing.expire(T0 + 2 * NS_PER_S)
    assert pairing.kept() == 0


@pytest.mark.parametrize('sec, nanosec', [(-1, 0), (0, NS_PER_S), (0, -1)])
def test_invalid_stamps_raise_value_error_naming_them(sec: int, nanosec: int) -> None:
    with pytest.raises(ValueError, match=f'sec={sec} nanosec={nanosec} is invalid'):
        message_stamp_ns(SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec)))
