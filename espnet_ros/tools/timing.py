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

"""Timing several code paths against each other in one process, for the small benchmarks."""

import time
from typing import Any, Callable

MS_PER_S = 1e3


def alternating_times(paths: dict[str, Callable[[], Any]], repeats: int, warmup: int
                      ) -> dict[str, list[float]]:
    """
    Return each path's times (ms) over ``repeats`` rounds, after ``warmup`` untimed ones.

    The order within a round alternates, so that load from other processes and cache
    warmth hit every path alike.
    """
    for _ in range(warmup):
        for path in paths.values():
            path()
    times: dict[str, list[float]] = {name: [] for name in paths}
    for index in range(repeats):
        for name in (list(paths) if index % 2 == 0 else list(reversed(paths))):
            start = time.perf_counter()
            paths[name]()
            times[name].append(MS_PER_S * (time.perf_counter() - start))
    return times
