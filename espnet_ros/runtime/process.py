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
Process tuning for long-running inference, opted in to by the programs that want it.

Library code (building a :class:`~espnet_ros.runtime.engine.SegmentationEngine`) changes
nothing process-wide. The segmenter node, the live and soak tools and the benchmark call
:func:`tune_for_streaming` once, at start-up, to keep freed host memory between frames
(:mod:`espnet_ros.runtime.host_memory`) and to shorten the GIL switch interval. Work that
uses PyTorch's CPU thread pool outside the inference thread runs through
:func:`run_on_passing_thread`.
"""

from concurrent.futures import ThreadPoolExecutor
import sys
from typing import Any, Callable, TypeVar

from espnet_ros.runtime.host_memory import retain_freed_memory

Result = TypeVar('Result')
# How long a Python thread may hold the GIL while another waits (Python's default: 5 ms).
# Eager inference hands the GIL over about a thousand times a frame; with 5 ms turns the
# node's executor thread fell behind a 60 Hz camera (docs/performance.md).
GIL_SWITCH_INTERVAL_S = 0.0002


def tune_for_streaming() -> None:
    """Keep freed host memory for the next frame and shorten the GIL switch interval."""
    retain_freed_memory()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def run_on_passing_thread(function: Callable[..., Result], *args: Any) -> Result:
    """
    Return ``function(*args)``, run on a new thread that ends when it returns (or raises).

    PyTorch's OpenMP runtime (libgomp) keeps a team of worker threads for every thread that
    ran a parallel operation, for as long as that thread lives; once there are more such
    threads than cores its barriers sleep instead of spinning, and the inference thread
    slows down (docs/performance.md).
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix='passing') as passing:
        return passing.submit(function, *args).result()
