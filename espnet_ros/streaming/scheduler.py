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
Which cameras' frames the shared engine runs next, as one batch; no ROS.

Each camera has a one-place mailbox (newest wins, as for the single camera): a frame not yet
taken is replaced by a newer one and counted. :meth:`BatchScheduler.next_batch` waits for a
camera with a frame, then at most ``batch_wait_s`` for the cameras whose next frame is due
within that wait (judged from each camera's recent frame period), and takes up to
``max_batch`` frames. Cameras are served round-robin: one that was served goes to the back
of the line, so a flooding camera cannot starve a slow one. ``max_rate`` applies per camera:
a camera served less than ``1 / max_rate`` s ago keeps its newest frame until its turn. A
camera that went silent is not due, so it never holds the others back.
"""

from dataclasses import dataclass
import math
import threading
import time
from typing import Generic, Optional, Sequence, TypeVar

Item = TypeVar('Item')

DEFAULT_BATCH_WAIT_S = 0.01  # a few ms: cameras triggered together land in one batch
# How quickly the estimated frame period of a camera follows a change (exponential average).
PERIOD_SMOOTHING = 0.25


@dataclass(frozen=True)
class BatchSettings:
    """How frames are batched: most frames a batch, longest wait for more, rate per camera."""

    max_batch: int = 0  # 0 = as many as there are cameras
    batch_wait_s: float = DEFAULT_BATCH_WAIT_S  # 0 = never wait for a camera whose frame is due
    max_rate: float = 0.0  # frames per second per camera at most; 0 = no limit

    def limit(self, cameras: int) -> int:
        """Return the most frames a batch holds among ``cameras`` cameras."""
        return min(self.max_batch, cameras) if self.max_batch > 0 else cameras


class _Camera(Generic[Item]):
    """One camera's mailbox and timing, guarded by the scheduler's lock."""

    def __init__(self) -> None:
        self.item: Optional[Item] = None
        self.replaced = 0
        self.last_arrival = -math.inf
        self.period = math.inf  # estimated time between frames; inf until two came
        self.last_served = -math.inf


class BatchScheduler(Generic[Item]):
    """Per-camera newest-frame mailboxes, taken as fair batches (see the module's text)."""

    def __init__(self, names: Sequence[str], settings: BatchSettings = BatchSettings()) -> None:
        """Prepare empty mailboxes for the cameras ``names``, served in that order first."""
        if not names:
            raise ValueError('a batch scheduler needs at least one camera')
        self._cameras: dict[str, _Camera[Item]] = {name: _Camera() for name in names}
        self._line = list(names)  # round-robin order: the next served is the first ready
        self._settings = settings
        self._changed = threading.Condition()
        self._closed = False

    @property
    def names(self) -> list[str]:
        """Return the cameras' names, in the order given."""
        return list(self._cameras)

    def apply(self, settings: BatchSettings) -> None:
        """Batch by ``settings`` from the next batch on."""
        with self._changed:
            self._settings = settings
            self._changed.notify_all()

    def put(self, name: str, item: Item) -> bool:
        """Offer camera ``name``'s newest frame; return True if it replaced an untaken one."""
        now = time.monotonic()
        with self._changed:
            camera = self._cameras[name]
            replaced = camera.item is not None
            camera.replaced += replaced
            camera.item = item
            gap = now - camera.last_arrival
            if math.isfinite(gap):
                camera.period = gap if math.isinf(camera.period) else (
                    camera.period + PERIOD_SMOOTHING * (gap - camera.period))
            camera.last_arrival = now
            self._changed.notify_all()
            return replaced

    def replaced(self, name: str) -> int:
        """Return how many of camera ``name``'s frames a newer one replaced untaken."""
        with self._changed:
            return self._cameras[name].replaced

    def silent_for(self, name: str) -> float:
        """Return the seconds since camera ``name``'s last frame (inf: none yet)."""
        with self._changed:
            return time.monotonic() - self._cameras[name].last_arrival

    def period(self, name: str) -> float:
        """Return camera ``name``'s estimated frame period in seconds (inf: unknown yet)."""
        with self._changed:
            return self._cameras[name].period

    def close(self) -> None:
        """Wake a waiting :meth:`next_batch` for good (it returns nothing while closed)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def reopen(self) -> None:
        """Let :meth:`next_batch` wait again (a worker started anew)."""
        with self._changed:
            self._closed = False

    def clear(self) -> None:
        """Drop every untaken frame (a stopped worker)."""
        with self._changed:
            for camera in self._cameras.values():
                camera.item = None

    # Choosing the batch ---------------------------------------------------------------

    def _next_turn(self, camera: _Camera[Item]) -> float:
        """Return when ``camera`` may be served again under max_rate."""
        rate = self._settings.max_rate
        return camera.last_served + 1.0 / rate if rate > 0 else -math.inf

    def _ready(self, now: float) -> list[str]:
        """Return the cameras with a frame whose turn has come, in round-robin order."""
        return [name for name in self._line if self._cameras[name].item is not None
                and self._next_turn(self._cameras[name]) <= now]

    def _due(self, name: str, now: float, until: float) -> bool:
        """Tell whether camera ``name``, without a frame, is expected to have one by ``until``."""
        camera = self._cameras[name]
        if camera.item is not None or math.isinf(camera.period):
            return False
        expected = camera.last_arrival + camera.period
        # Overdue by more than a period: the camera went silent (or slowed), do not wait.
        return (expected <= until and now <= expected + camera.period
                and self._next_turn(camera) <= until)

    def next_batch(self, timeout: float) -> list[tuple[str, Item]]:
        """
        Return up to max_batch (camera, frame) pairs, waiting up to ``timeout`` s for one.

        Returns an empty list when no camera had a frame in time, or once closed.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self._closed:
                    return []
                now = time.monotonic()
                ready = self._ready(now)
                if ready:
                    break
                if now >= deadline:
                    return []
                turns = [self._next_turn(camera) for camera in self._cameras.values()
                         if camera.item is not None]
                self._changed.wait(min([deadline, *turns]) - now)
            settings = self._settings
            limit = settings.limit(len(self._cameras))
            until = now + settings.batch_wait_s
            while len(ready) < limit and not self._closed:
                waiting = [name for name in self._line
                           if name not in ready and self._due(name, now, until)]
                if not waiting or now >= until:
                    break
                self._changed.wait(until - now)
                now = time.monotonic()
                ready = self._ready(now)
            chosen = ready[:limit]
            batch = []
            for name in chosen:
                camera = self._cameras[name]
                batch.append((name, camera.item))
                camera.item = None
                camera.last_served = now
                self._line.remove(name)
                self._line.append(name)
            return batch
