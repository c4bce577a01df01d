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
Frame hand-off between the ROS callbacks and the inference thread, and its statistics.

The camera callback never waits for the network: it drops the frame into a one-place
mailbox, replacing (and counting) any frame the worker has not taken yet, so latency stays
bounded when the camera is faster than the network. No ROS import here.

Work that uses PyTorch's CPU thread pool outside the inference thread (loading and warming
up an engine) runs on a thread that ends with it: see :func:`run_on_passing_thread`.
"""

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
import threading
import time
from typing import Any, Callable, Deque, Generic, Optional, TypeVar

import numpy as np

Item = TypeVar('Item')
Result = TypeVar('Result')
RATE_WINDOW_S = 5.0
LATENCY_WINDOW = 200


class NewestWins(Generic[Item]):
    """A one-place mailbox: ``put`` replaces an untaken item, ``take`` waits for one."""

    def __init__(self) -> None:
        self._item: Optional[Item] = None
        self._ready = threading.Condition()
        self._closed = False
        self.replaced = 0

    def put(self, item: Item) -> bool:
        """Offer an item; return True if it replaced one the worker never took."""
        with self._ready:
            replaced = self._item is not None
            self.replaced += replaced
            self._item = item
            self._ready.notify()
            return replaced

    def take(self, timeout: Optional[float] = None) -> Optional[Item]:
        """Return the newest item, waiting up to ``timeout`` s; None if none came or closed."""
        with self._ready:
            if self._item is None and not self._closed:
                self._ready.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake any waiting ``take`` for good; later puts are still accepted but never waited."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()


class RateMeter:
    """Events per second over a sliding window."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self._window_s = window_s
        self._times: Deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, now: Optional[float] = None) -> None:
        """Record one event."""
        with self._lock:
            self._times.append(time.monotonic() if now is None else now)

    def rate(self, now: Optional[float] = None) -> float:
        """Return the event rate over the window (Hz)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._times and now - self._times[0] > self._window_s:
                self._times.popleft()
            if len(self._times) < 2:
                return 0.0
            return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)


@dataclass
class LatencyWindow:
    """The most recent latencies (seconds), for median and tail figures."""

    size: int = LATENCY_WINDOW
    samples: Deque[float] = field(default_factory=deque)

    def add(self, seconds: float) -> None:
        """Record one latency."""
        self.samples.append(seconds)
        if len(self.samples) > self.size:
            self.samples.popleft()

    def percentile(self, q: float) -> float:
        """Return the q-th percentile in seconds (NaN when empty)."""
        return float(np.percentile(self.samples, q)) if self.samples else float('nan')


def run_on_passing_thread(function: Callable[..., Result], *args: Any) -> Result:
    """
    Return ``function(*args)``, run on a new thread that ends when it returns (or raises).

    PyTorch's OpenMP runtime (libgomp) keeps a team of worker threads for every thread that
    ran a parallel operation, for as long as that thread lives. Once there are more such
    threads than cores, its barriers stop spinning and put every thread to sleep: the node's
    inference thread, beside a team left by the thread that had built its engine, blocked
    about 240 times a 1024x512 frame and took 30-40% longer on the 2-core CPU.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix='passing') as passing:
        return passing.submit(function, *args).result()
