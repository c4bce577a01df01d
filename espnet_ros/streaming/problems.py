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

"""Warnings about bad frames, throttled per kind so that one noisy kind hides no other."""

import math
import re
import time
from typing import Callable

WARN_THROTTLE_S = 5.0
# Past this many kinds, new kinds share one throttle: a stream of made-up encodings must not
# grow the table without bound.
MAX_PROBLEM_KINDS = 64
# Numbers and quoted names differ between frames with the same kind of problem.
_VARYING = re.compile(r"'[^']*'|\"[^\"]*\"|\d[\d,.]*")


class ProblemLog:
    """
    Warnings throttled per kind of problem.

    The first warning of a kind is passed to ``warn`` at once; more of that kind within
    ``period_s`` are only counted, and the next one passed on says how many were left out.
    """

    def __init__(self, warn: Callable[[str], None], period_s: float = WARN_THROTTLE_S, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._warn = warn
        self._period_s = period_s
        self._monotonic = monotonic
        self._kinds: dict[str, tuple[float, int]] = {}  # kind: (last passed on, left out since)

    def warning(self, text: str) -> None:
        """Pass ``text`` on unless a warning of its kind was passed on less than a period ago."""
        kind = _VARYING.sub('#', text)
        if kind not in self._kinds and len(self._kinds) >= MAX_PROBLEM_KINDS:
            kind = ''
        now = self._monotonic()
        logged, left_out = self._kinds.get(kind, (-math.inf, 0))
        if now - logged < self._period_s:
            self._kinds[kind] = (logged, left_out + 1)
            return
        self._kinds[kind] = (now, 0)
        self._warn(text + (f' ({left_out} more like it since the last such warning)'
                           if left_out else ''))
