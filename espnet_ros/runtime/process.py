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

import sys
import threading
from typing import Any, Callable, TypeVar

from espnet_ros.runtime.host_memory import retain_freed_memory

Result = TypeVar('Result')
# How long a Python thread may hold the GIL while another waits (Python's default: 5 ms).
# Eager inference hands the GIL over about a thousand times a frame; with 5 ms turns the
# node's executor thread fell behind a 60 Hz camera (docs/performance.md).
GIL_SWITCH_INTERVAL_S = 0.0002
# How often a caller waiting for a passing thread checks whether to stop waiting.
ABANDON_POLL_S = 0.1


class Abandoned(RuntimeError):
    """The caller stopped waiting for work on a passing thread (the process is ending)."""


def tune_for_streaming() -> None:
    """Keep freed host memory for the next frame and shorten the GIL switch interval."""
    retain_freed_memory()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def run_on_passing_thread(function: Callable[..., Result], *args: Any,
                          abandon: Callable[[], bool] = lambda: False) -> Result:
    """
    Return ``function(*args)``, run on a new thread that ends when it returns (or raises).

    PyTorch's OpenMP runtime (libgomp) keeps a team of worker threads for every thread that
    ran a parallel operation, for as long as that thread lives; once there are more such
    threads than cores its barriers sleep instead of spinning, and the inference thread
    slows down (docs/performance.md).

    The caller never waits for the thread uninterruptibly: Ctrl-C reaches it at once, and
    once ``abandon()`` is true (say, SIGTERM shut ROS down) it raises :class:`Abandoned`.
    Either way the thread, a daemon, is left to finish or to end with the process: a
    two-minute model compile must not hold a process that was asked to stop.
    """
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome['result'] = function(*args)
        except BaseException as error:  # noqa: B902 - handed over to the caller as it is
            outcome['error'] = error
        finally:
            done.set()

    threading.Thread(target=work, name='passing', daemon=True).start()
    while not done.wait(ABANDON_POLL_S):
        if abandon():
            raise Abandoned(f'stopped waiting for {getattr(function, "__name__", function)}')
    if 'error' in outcome:
        raise outcome['error']
    return outcome['result']
