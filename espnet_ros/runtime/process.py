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
:func:`run_on_passing_thread`. :func:`wait_passively` (called by the segmenter's entry point
before PyTorch is imported) and :func:`use_threads` keep inference from stalling when other
processes share the cores (docs/performance-under-load.md). The node's entry point calls
:func:`flush_denormals_in_inference_threads`: flush-to-zero and denormals-are-zero in the
threads that run inference (a subnormal activation costs an Intel core a micro-code assist
per use: twice the time of a whole ESPNet frame here).

This module imports no PyTorch at import time, so that an entry point can call
:func:`wait_passively` first.
"""

import os
from pathlib import Path
import sys
import threading
from typing import Any, Callable, Mapping, TypeVar

from espnet_ros.runtime.host_memory import retain_freed_memory
from espnet_ros.runtime.options import DEFAULT_THREADS, resolve_threads

Result = TypeVar('Result')
# How long a Python thread may hold the GIL while another waits (Python's default: 5 ms).
# Eager inference hands the GIL over about a thousand times a frame; with 5 ms turns the
# node's executor thread fell behind a 60 Hz camera (docs/performance.md).
GIL_SWITCH_INTERVAL_S = 0.0002
# OpenMP idle workers sleep at once instead of spinning (libgomp spins up to 300,000 rounds
# by default), leaving the cores to the robot's other processes; both runtimes read these
# once, when they are loaded. KMP_BLOCKTIME is Intel's and LLVM's OpenMP (MKL builds).
PASSIVE_OPENMP: Mapping[str, str] = {'OMP_WAIT_POLICY': 'PASSIVE', 'KMP_BLOCKTIME': '0'}
OPENMP_LIBRARIES = ('libgomp', 'libiomp', 'libomp')
# How often a caller waiting for a passing thread checks whether to stop waiting.
ABANDON_POLL_S = 0.1
# Set once a program opts in: every inference thread started afterwards flushes denormals.
_FLUSH_DENORMALS = threading.Event()


class Abandoned(RuntimeError):
    """The caller stopped waiting for work on a passing thread (the process is ending)."""


def tune_for_streaming() -> None:
    """Keep freed host memory for the next frame and shorten the GIL switch interval."""
    retain_freed_memory()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


def flush_denormals() -> bool:
    """
    Set flush-to-zero and denormals-are-zero in the calling thread; False if the CPU has none.

    Results too small to be normal become zero, and so do subnormal operands: an Intel core
    otherwise takes a micro-code assist for each (ESPNet's activations hold a few hundred
    per million values; a 3x3 convolution on subnormal input measured 65-130x slower, its
    whole frame 2x). The flags live in each thread's control register (x86 MXCSR), so they
    cover the calling thread and the threads it starts afterwards: PyTorch's OpenMP workers
    (GNU OpenMP in the Linux wheels; oneDNN's kernels run on them too) take the control word
    of the thread that creates their team, when they are created. Called after a thread's
    first parallel operation it reaches that thread alone, and its workers keep computing
    with subnormals: call it first thing in the thread. Thread-wide: numpy there flushes too.
    """
    import torch  # not at import time: see wait_passively

    return bool(torch.set_flush_denormal(True))


def flush_denormals_in_inference_threads() -> bool:
    """
    Opt in: flush denormals in the calling thread now and in every inference thread after.

    For programs' entry points (the node, the live tool): the inference worker and the passing
    threads call :func:`prepare_inference_thread` first thing. Return :func:`flush_denormals`'s
    answer for the calling thread.
    """
    _FLUSH_DENORMALS.set()
    return flush_denormals()


def prepare_inference_thread() -> None:
    """Run first in each thread that runs inference: flush denormals if the program opted in."""
    if _FLUSH_DENORMALS.is_set():
        flush_denormals()


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
            prepare_inference_thread()
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


def openmp_loaded(maps: Path = Path('/proc/self/maps')) -> bool:
    """Return True if an OpenMP runtime is loaded (or, without /proc, if torch is)."""
    try:
        mapped = maps.read_text()
    except OSError:
        return 'torch' in sys.modules
    return any(f'/{name}' in mapped for name in OPENMP_LIBRARIES)


def wait_passively() -> bool:
    """
    Tell OpenMP's idle workers to sleep, not spin; return False if it is too late for that.

    Settings the user made in the environment win. It takes effect only before an OpenMP
    runtime is loaded (before ``import torch``), so programs call it first thing.
    """
    if openmp_loaded():
        return False
    for name, value in PASSIVE_OPENMP.items():
        os.environ.setdefault(name, value)
    return True


def use_threads(threads: int = DEFAULT_THREADS) -> int:
    """
    Set PyTorch's CPU thread count (0 = half the usable cores); return it.

    Process-wide, and taken up by each thread at its first parallel operation: call it before
    the engine is built and before the inference thread starts.
    """
    import torch  # not at import time: see wait_passively

    count = resolve_threads(threads)
    torch.set_num_threads(count)
    return count
