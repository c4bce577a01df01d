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

"""Rates and latency windows for diagnostics and tools, and the one percentile helper."""

from collections import deque
from dataclasses import dataclass, field
import math
import threading
import time
from typing import Deque, Iterable, Optional

import numpy as np

RATE_WINDOW_S = 5.0
LATENCY_WINDOW = 200


def percentile(values: Iterable[float], q: float) -> float:
    """Return the q-th percentile, q from 0 to 100, of the values; NaN when there are none."""
    data = list(values)
    return float(np.percentile(data, q)) if data else math.nan


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
        return percentile(self.samples, q)
