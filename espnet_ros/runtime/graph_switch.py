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
From eager to compiled while serving: a compiled graph loaded from the cache or built aside.

An engine with ``compile_mode`` ``cached`` or ``background`` serves on its eager runner from
the first frame. A :class:`GraphSwitch` thread meanwhile looks for the graph's cache entry
(:mod:`espnet_ros.runtime.graph_cache`), and with ``background`` builds a missing or bad one
in a child process. A cache folder that is not private to this user is not used at all (one
warning naming it; see :mod:`espnet_ros.runtime.graph_store`). Once the graph is loaded and
agrees with the eager network on a probe frame, the switch hands it to the engine in one
assignment: a frame in flight finishes on the runner it started on, the next one takes the
graph. Every step is reported through
``log`` and :meth:`GraphSwitch.describe`.
"""

import enum
import os
from pathlib import Path
import signal
import subprocess
import threading
import time
from typing import Callable, Optional

import torch
from torch import nn

from espnet_ros.runtime.graph_builder import builder_command, write_job
from espnet_ros.runtime.graph_cache import (load_verified, PackagedGraph, ProbeDisagreement,
                                            rejected_before, remember_rejection)
from espnet_ros.runtime.graph_key import GraphKey
from espnet_ros.runtime.graph_store import Entry, GraphCacheError, Store, UntrustedCacheError
from espnet_ros.runtime.options import CompileMode
from espnet_ros.runtime.phase_labels import kernel_unavailable
from espnet_ros.zoo.registry import NetworkSpec

# How long close() waits for a terminated builder before killing it.
BUILDER_STOP_TIMEOUT_S = 5.0


def stop_group(process: subprocess.Popen) -> None:
    """End a builder and its process group: SIGTERM, then SIGKILL if it lingers."""
    for sent in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sent)
        except ProcessLookupError:
            pass
        try:
            process.wait(BUILDER_STOP_TIMEOUT_S)
            return
        except subprocess.TimeoutExpired:
            continue


class SwitchState(str, enum.Enum):
    """Where a switch stands; the value is what diagnostics show."""

    LOOKING = 'looking'            # reading the cache entry (serving eager meanwhile)
    BUILDING = 'building'          # a child process is compiling the graph
    EAGER = 'eager'                # settled on eager: nothing to switch to
    COMPILED = 'compiled'          # the engine runs the compiled graph
    FAILED = 'failed'              # staying eager; the reason is in describe()
    CLOSED = 'closed'


class GraphSwitch:
    """Finds or builds one compiled graph in the background and hands it to ``on_ready``."""

    def __init__(self, entry: Entry, *, mode: str, network: nn.Module, reference: nn.Module,
                 probe: torch.Tensor, spec: NetworkSpec, autotune: bool,
                 on_ready: Callable[[PackagedGraph], None],
                 log: Callable[[str], None], warn: Optional[Callable[[str], None]] = None
                 ) -> None:
        """
        Prepare to bring ``entry``'s graph in; :meth:`start` begins.

        ``network``: the engine's network, whose weights a builder child compiles into the
        network ``spec`` builds;
        ``reference``: that network at the graph's precision, prepared the same way, which a
        loaded graph must agree with on ``probe`` (a preprocessed frame; how closely:
        :data:`~espnet_ros.runtime.graph_cache.MIN_PROBE_AGREEMENT`). A graph that disagrees
        is remembered beside its entry, and not built again at the next start.
        """
        self.entry = entry
        self._network = network
        self.mode = CompileMode(mode)
        self._reference = reference
        self._probe = probe
        self._spec = spec
        self._autotune = autotune
        self._on_ready = on_ready
        self._log = log
        self._warn = warn or log
        self._lock = threading.Lock()
        self._state = SwitchState.LOOKING
        self._detail = 'looking for a cached compiled graph, serving eager meanwhile'
        self._process: Optional[subprocess.Popen] = None
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name='graph-switch', daemon=True)

    @property
    def key(self) -> GraphKey:
        """Return the key of the graph this switch brings in."""
        return self.entry.key

    def start(self) -> 'GraphSwitch':
        """Start the background thread; return self."""
        self._thread.start()
        return self

    def state(self) -> SwitchState:
        """Return where the switch stands."""
        with self._lock:
            return self._state

    def describe(self) -> str:
        """Return the state and its detail, for logs and diagnostics."""
        with self._lock:
            return f'{self._state.value}: {self._detail}'

    def settled(self) -> bool:
        """Return True once the switch has nothing more to do (compiled, eager or failed)."""
        return not self._thread.is_alive()

    def wait(self, timeout_s: Optional[float] = None) -> SwitchState:
        """Wait until the switch has nothing more to do (or ``timeout_s``); return the state."""
        self._thread.join(timeout_s)
        return self.state()

    def close(self) -> None:
        """Stop: end a running build (its partial files are its own to remove) and the thread."""
        self._closed.set()
        with self._lock:
            process = self._process
            if self._state in (SwitchState.LOOKING, SwitchState.BUILDING):
                self._set(SwitchState.CLOSED, 'the engine was closed')
        if process is not None and process.poll() is None:
            stop_group(process)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(BUILDER_STOP_TIMEOUT_S)
        self._reference = self._network = None

    def _set(self, state: SwitchState, detail: str) -> None:
        self._state, self._detail = state, detail

    def _report(self, state: SwitchState, detail: str) -> None:
        with self._lock:
            if self._state == SwitchState.CLOSED:
                return
            self._set(state, detail)
        text = f'compiled graph {self.entry.package.name}: {detail}'
        if state == SwitchState.FAILED:
            self._warn(text)
        else:
            self._log(text)

    def _run(self) -> None:
        try:
            store = self.entry.open_store(create=self.mode == CompileMode.BACKGROUND)
        except UntrustedCacheError as error:
            self._report(SwitchState.FAILED, f'staying eager: {error}')
            return
        except Exception as error:  # noqa: B902 - the engine keeps serving eager either way
            self._report(SwitchState.FAILED, f'staying eager: {type(error).__name__}: {error}')
            return
        if store is None:
            self._report(SwitchState.EAGER, 'not in the cache; staying eager '
                         f'(compile_mode {self.mode.value} does not build)')
            return
        with store:
            self._run_in(store)

    def _run_in(self, store: Store) -> None:
        try:
            if self.entry.exists() and self._try_load(store, 'loaded from the cache',
                                                      SwitchState.LOOKING):
                return
            if self.mode != CompileMode.BACKGROUND:
                self._report(SwitchState.EAGER, 'not in the cache; staying eager '
                             f'(compile_mode {self.mode.value} does not build)')
                return
            rejected = rejected_before(self.entry, store)
            if rejected:
                self._report(SwitchState.EAGER, f'staying eager, not building it again: '
                             f'{rejected}')
                return
            if self._build():
                self._try_load(store, 'built', SwitchState.FAILED)
        except Exception as error:  # noqa: B902 - the engine keeps serving eager either way
            self._report(SwitchState.FAILED, f'staying eager: {type(error).__name__}: {error}')

    def _try_load(self, store: Store, how: str, otherwise: SwitchState) -> bool:
        """Load, check and hand over the entry's graph; else remove it and report ``otherwise``."""
        started = time.monotonic()
        try:
            graph = load_verified(self.entry, self._reference, self._probe, store)
        except GraphCacheError as error:
            self.entry.remove(store)
            if isinstance(error, ProbeDisagreement):
                remember_rejection(self.entry, error, store)
            prefix = 'staying eager: ' if otherwise == SwitchState.FAILED else ''
            self._report(otherwise, f'{prefix}{error}; removed')
            return False
        if self._closed.is_set():
            return True
        self._on_ready(graph)
        # The probe ran the graphs: a head that needs the kernel has built it or failed.
        unavailable = kernel_unavailable()
        without = (f'; its labels head runs without the C kernel: {unavailable}'
                   if unavailable else '')
        self._report(SwitchState.COMPILED, f'{how}, switched from eager '
                     f'(loaded and checked in {time.monotonic() - started:.1f} s){without}')
        return True

    def _build(self) -> bool:
        folder = self.entry.folder
        try:
            job = write_job(self.entry, spec=self._spec, network=self._network,
                            autotune=self._autotune)
        except Exception as error:  # noqa: B902 - OSError, or torch.save's RuntimeError
            self._report(SwitchState.FAILED, f'staying eager: cannot write to the cache '
                         f'folder {folder} ({describe_write_error(error)})')
            return False
        try:
            return self._run_builder(job.job, job.lock_fd)
        finally:
            job.finish()  # the build folder goes, whatever the child did

    def _run_builder(self, job: Path, lock_fd: int) -> bool:
        started = time.monotonic()
        with self._lock:
            if self._closed.is_set():
                return False
            # A session of its own: close() ends the builder and the compilers it started.
            # The child inherits the build's owner lock: the build is live while either lives.
            self._process = subprocess.Popen(builder_command(job), stdout=subprocess.PIPE,
                                             stderr=subprocess.PIPE, text=True,
                                             start_new_session=True, pass_fds=(lock_fd,))
            self._set(SwitchState.BUILDING, 'compiling in a child process '
                      f'(pid {self._process.pid}); serving eager meanwhile')
        self._log(f'compiled graph {self.entry.package.name}: not in the cache; compiling '
                  f'it in the background (pid {self._process.pid}), serving eager meanwhile')
        _, errors = self._process.communicate()
        if self._closed.is_set():
            return False
        if self._process.returncode != 0:
            lines = errors.strip().splitlines() or ['no message']
            reason = lines[-1]
            if any('No space left' in line for line in lines):
                reason = f'the disk of {self.entry.folder} is full ({reason})'
            self._report(SwitchState.FAILED, f'staying eager: the build failed '
                         f'(exit {self._process.returncode}): {reason}')
            return False
        self._log(f'compiled graph {self.entry.package.name}: built in '
                  f'{time.monotonic() - started:.0f} s')
        return True


def describe_write_error(error: BaseException) -> str:
    """Return why writing failed, with a full disk said plainly."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    text = str(error)
    return f'{type(error).__name__}: {text}' if text else type(error).__name__
