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
Colour frames and depth images paired by stamp, whichever arrives second; no ROS.

A colour frame enters once its 2D outputs are out (they never wait for depth); a depth image
enters as it arrives. A colour frame is paired with the depth image of the nearest stamp
within ``slop_s`` as soon as that choice is settled: a depth image of its stamp or later is
there (depth comes in stamp order, so no nearer one can follow) and one within the slop is
there. Otherwise it waits, at most ``wait_s``, for depth that comes later (a registration
node, a slower driver); when the wait is over it takes the nearest within the slop that came,
or goes without a cloud (*expired*, counted as unpaired by the caller).

Depth is kept sorted by stamp, not by arrival, so one depth image stamped far ahead or late
hides no partner; it is dropped when it arrived more than ``keep_s`` ago, when it is older
than the slop before the newest colour frame (colour is processed in stamp order, so no
colour frame can want it) and, oldest stamps first, when the images kept exceed
``max_bytes``. A depth image with an invalid stamp (negative, nanoseconds beyond a second)
or more pixels than ``max_pixels`` is refused with the reason and never kept.

Messages are read by their fields (``header.stamp``, ``width``, ``height``, ``data``), so
rclpy's and rosbags' messages take the same path. Every method is thread-safe.
"""

import bisect
from dataclasses import dataclass
import threading
from typing import Any, Generic, Optional, TypeVar

NS_PER_S = 1_000_000_000
# The depth kept for pairing, by arrival: comfortably more than a CPU frame's time in the
# network, since a colour frame enters only once its outputs are out.
DEFAULT_KEEP_S = 3.0
# Memory for the depth kept (the oldest stamps go first): 64 VGA 16UC1 images, a second of
# a 60 Hz camera; at 200 Hz the stamp floor keeps far fewer.
DEFAULT_MAX_DEPTH_BYTES = 64 * 640 * 480 * 2
# Colour frames waiting for depth at most: more are not a few frame periods' worth.
MAX_WAITING_COLOUR = 32

Colour = TypeVar('Colour')


@dataclass(frozen=True)
class PairingSettings:
    """How frames pair: stamp tolerance, wait for late depth, depth kept (all seconds)."""

    slop_s: float = 0.02
    wait_s: float = 0.25
    keep_s: float = DEFAULT_KEEP_S
    max_pixels: Optional[int] = None
    max_bytes: int = DEFAULT_MAX_DEPTH_BYTES


@dataclass(frozen=True)
class Paired(Generic[Colour]):
    """A colour frame's item and the depth message chosen for it (None: none in time)."""

    colour: Colour
    depth: Optional[Any]
    stamp_ns: int


def message_stamp_ns(header: Any) -> int:
    """Return a header's stamp in ns; ValueError names what is wrong with an invalid one."""
    sec, nanosec = int(header.stamp.sec), int(header.stamp.nanosec)
    if sec < 0 or not 0 <= nanosec < NS_PER_S:
        raise ValueError(f'stamp sec={sec} nanosec={nanosec} is invalid (sec >= 0 and '
                         f'0 <= nanosec < {NS_PER_S} required)')
    return sec * NS_PER_S + nanosec


def depth_refusal(message: Any, max_pixels: Optional[int]) -> Optional[str]:
    """Return why a depth message cannot be kept for pairing (stamp, size), or None."""
    try:
        message_stamp_ns(message.header)
    except ValueError as error:
        return f'depth image refused: {error}'
    pixels = int(message.width) * int(message.height)
    if max_pixels is not None and pixels > max_pixels:
        return (f'depth image {message.width}x{message.height} refused: {pixels} pixels is '
                f'more than max_input_pixels ({max_pixels})')
    return None


@dataclass
class _Depth:
    stamp_ns: int
    arrived_ns: int
    size: int
    message: Any


@dataclass
class _Waiting(Generic[Colour]):
    stamp_ns: int
    since_ns: int
    item: Colour


class StampPairing(Generic[Colour]):
    """Pairs colour items with depth messages by stamp, whichever comes second."""

    def __init__(self, settings: PairingSettings = PairingSettings()) -> None:
        """Start empty, pairing with ``settings`` (replace them with :meth:`apply`)."""
        self._settings = settings
        self._lock = threading.Lock()
        self._depth: list[_Depth] = []   # sorted by stamp
        self._stamps: list[int] = []     # the same stamps, for bisect
        self._waiting: list[_Waiting[Colour]] = []
        self._floor_ns = 0               # newest colour stamp less the slop
        self.evicted = 0                 # depth images dropped by the memory bound

    @property
    def settings(self) -> PairingSettings:
        """Return the settings in use."""
        return self._settings

    def apply(self, settings: PairingSettings) -> None:
        """Use ``settings`` from now on."""
        with self._lock:
            self._settings = settings

    def kept(self) -> int:
        """Return how many depth images are kept now."""
        with self._lock:
            return len(self._depth)

    def add_depth(self, message: Any, now_ns: int) -> tuple[Optional[str], list[Paired]]:
        """
        Keep a depth message; return (why it was refused or None, colour frames it settled).

        ``now_ns`` is a monotonic clock's time, for the wait and the keeping span.
        """
        settings = self._settings
        refusal = depth_refusal(message, settings.max_pixels)
        if refusal:
            return refusal, []
        stamp = message_stamp_ns(message.header)
        size = len(message.data)
        with self._lock:
            index = bisect.bisect_right(self._stamps, stamp)
            self._stamps.insert(index, stamp)
            self._depth.insert(index, _Depth(stamp, now_ns, size, message))
            self._prune(now_ns)
            return None, self._settle(now_ns, final=False)

    def add_colour(self, stamp_ns: int, item: Colour, now_ns: int) -> list[Paired]:
        """
        Enter a colour frame whose outputs are out; return the frames settled now.

        The list holds this frame if its depth partner is settled already, and frames pushed
        out by the bound on waiting frames (depth None).
        """
        with self._lock:
            self._floor_ns = max(self._floor_ns, stamp_ns - self._slop_ns())
            self._waiting.append(_Waiting(stamp_ns, now_ns, item))
            settled = []
            if len(self._waiting) > MAX_WAITING_COLOUR:
                oldest = self._waiting.pop(0)
                settled.append(self._settle_one(oldest))
            self._prune(now_ns)
            return settled + self._settle(now_ns, final=False)

    def expire(self, now_ns: int) -> list[Paired]:
        """Return the frames whose wait is over: paired with the best depth in time, or None."""
        with self._lock:
            self._prune(now_ns)
            return self._settle(now_ns, final=True)

    def clear(self) -> list[Paired]:
        """Drop all depth; return every waiting frame, settled with what is there."""
        with self._lock:
            settled = [self._settle_one(waiting) for waiting in self._waiting]
            self._waiting.clear()
            self._depth.clear()
            self._stamps.clear()
            return settled

    # Under the lock --------------------------------------------------------------------

    def _slop_ns(self) -> int:
        return int(round(self._settings.slop_s * NS_PER_S))

    def _nearest(self, stamp_ns: int) -> Optional[_Depth]:
        """Return the kept depth nearest ``stamp_ns`` within the slop (earlier on a tie)."""
        index = bisect.bisect_left(self._stamps, stamp_ns)
        best = None
        for candidate in self._depth[max(index - 1, 0):index + 1]:
            gap = abs(candidate.stamp_ns - stamp_ns)
            if gap <= self._slop_ns() and (best is None or gap < abs(best.stamp_ns - stamp_ns)):
                best = candidate
        return best

    def _settled(self, stamp_ns: int) -> bool:
        """Return True when no nearer depth can come: one at or after ``stamp_ns`` is kept."""
        return bool(self._stamps) and self._stamps[-1] >= stamp_ns

    def _settle_one(self, waiting: _Waiting[Colour]) -> Paired[Colour]:
        partner = self._nearest(waiting.stamp_ns)
        return Paired(waiting.item, partner.message if partner else None, waiting.stamp_ns)

    def _settle(self, now_ns: int, *, final: bool) -> list[Paired]:
        wait_ns = int(self._settings.wait_s * NS_PER_S)
        settled, still = [], []
        for waiting in self._waiting:
            over = final and now_ns - waiting.since_ns >= wait_ns
            partner = self._nearest(waiting.stamp_ns)
            if over or (partner is not None and self._settled(waiting.stamp_ns)):
                settled.append(Paired(waiting.item, partner.message if partner else None,
                                      waiting.stamp_ns))
            else:
                still.append(waiting)
        self._waiting = still
        return settled

    def _prune(self, now_ns: int) -> None:
        keep_ns = int(self._settings.keep_s * NS_PER_S)
        floor = min([self._floor_ns] + [w.stamp_ns - self._slop_ns() for w in self._waiting])
        kept = [depth for depth in self._depth
                if now_ns - depth.arrived_ns <= keep_ns and depth.stamp_ns >= floor]
        total = sum(depth.size for depth in kept)
        while kept and total > self._settings.max_bytes:
            total -= kept.pop(0).size
            self.evicted += 1
        self._depth = kept
        self._stamps = [depth.stamp_ns for depth in kept]
