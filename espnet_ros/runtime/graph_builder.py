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
Building a compiled graph: AOTInductor, in a child process at a lower priority.

The graph is the network (folded batch norms, weights frozen) with upsampling, arg-max and
confidence fused into its last kernels (:mod:`espnet_ros.runtime.head`), compiled ahead of
time into a ``.pt2`` package for one :class:`~espnet_ros.runtime.graph_key.GraphKey`.
Compiling takes minutes of Python and C++ compiler time that must not stall the frames being
served, so it runs in a child (``python -m espnet_ros.runtime.graph_builder JOB PARENT_PID``).

The parent writes the job (weights-only loadable) into a private build folder of the cache
(:meth:`~espnet_ros.runtime.graph_store.Store.new_build`); the child compiles there and
moves the package and its sidecar into place. Whatever happens (a failed compile, a full
disk, a killed parent), the build folder goes: the parent removes it once the child has
exited, the child when its parent has gone, and the cache's sweep when both were killed.
"""

import contextlib
import io
import os
from pathlib import Path
import sys
import time
from typing import NoReturn, Optional

import torch
from torch import nn

from espnet_ros.compat import aoti_compile_and_package, inductor_config_patch
from espnet_ros.runtime.folding import folded_fp32_copy
from espnet_ros.runtime.graph_key import GraphKey, weights_sha256
from espnet_ros.runtime.graph_store import (Build, Entry, GraphCacheError,
                                            NO_FOLLOW, open_store,
                                            PACKAGE_SUFFIX, remove_name, Store,
                                            untrusted_reason)
from espnet_ros.runtime.head import GRAPH_HEADS
from espnet_ros.runtime.mixed_precision import apply_mixed_precision
from espnet_ros.runtime.options import Precision
from espnet_ros.zoo.registry import NetworkSpec

JOB_FILE = 'job.pt'
# AOTInductor writes only to names ending in .pt2.
BUILT_PACKAGE = 'graph' + PACKAGE_SUFFIX
BUILDER_MODULE = 'espnet_ros.runtime.graph_builder'
# The child compiles at a lower priority than the frames being served.
BUILDER_NICENESS = 10


def prepare_network(network: nn.Module, precision: str) -> nn.Module:
    """Return a folded fp32 CPU copy of ``network``, bf16 where 'mixed' says, channels-last."""
    prepared = folded_fp32_copy(network)
    if precision == Precision.MIXED:
        apply_mixed_precision(prepared)
    elif precision != Precision.FP32:
        raise GraphCacheError(f'compiled graphs are built in fp32 or mixed, not {precision}')
    return prepared.to(memory_format=torch.channels_last)


def build_package(network: nn.Module, key: GraphKey, target: str, *,
                  autotune: bool = True) -> None:
    """
    Compile ``network`` (prepared, see :func:`prepare_network`) for ``key`` into ``target``.

    The package holds two graphs of the same network (:data:`GRAPH_HEADS`): labels alone,
    and labels with confidence; a frame runs the one it needs. The weights are frozen into
    them, so oneDNN gets them packed once and inductor folds the constants; ``autotune``
    also times inductor's own GEMM templates against oneDNN.
    """
    width, height = key.input_size
    example = torch.zeros(key.batch, 3, height, width)
    options = {'freezing': True, 'max_autotune': autotune}
    with torch.no_grad():
        exported = {name: torch.export.export(head(network).eval(), (example,))
                    for name, head in GRAPH_HEADS.items()}
        aoti_compile_and_package(exported, Path(target), options)


class BuildJob:
    """A build handed to a child: its private folder, the job file in it, and the store."""

    def __init__(self, store: Store, build: Build) -> None:
        """Hold the opened store and build folder until :meth:`finish`."""
        self.store = store
        self.build = build
        self.job = build.folder / JOB_FILE

    @property
    def lock_fd(self) -> int:
        """Return the owner lock's descriptor, for the child to inherit (it marks the build)."""
        return self.build.lock

    def finish(self) -> None:
        """Remove the build folder (whatever the child left) and close the store."""
        with contextlib.suppress(OSError):
            self.build.remove(self.store.fd)
        self.store.close()


def write_job(entry: Entry, *, spec: NetworkSpec, network: nn.Module,
              autotune: bool) -> BuildJob:
    """Write what the builder child needs (weights-only loadable) into a new build folder."""
    store = entry.open_store()
    try:
        build = store.new_build()
    except BaseException:
        store.close()
        raise
    job = BuildJob(store, build)
    # Serialised in memory first: a full disk then fails as an OSError that says so.
    buffer = io.BytesIO()
    torch.save({'network': spec.to_json(), 'autotune': autotune, 'key': entry.key.to_json(),
                'state_dict': {name: value.detach().cpu() for name, value in
                               network.state_dict().items()}}, buffer)
    try:
        with os.fdopen(build.create(JOB_FILE), 'wb') as stream:
            stream.write(buffer.getbuffer())
    except BaseException:
        job.finish()
        raise
    return job


def builder_command(job: Path) -> list[str]:
    """Return the command that builds the entry a job file describes, for this process."""
    return [sys.executable, '-m', BUILDER_MODULE, str(job), str(os.getpid())]


def _open_build(store: Store, name: str) -> Build:
    """Open the build folder ``name`` of ``store`` as the child: private, not a link."""
    descriptor = os.open(name, os.O_RDONLY | os.O_DIRECTORY | NO_FOLLOW, dir_fd=store.fd)
    status = os.fstat(descriptor)
    reason = untrusted_reason(status)
    if reason:
        os.close(descriptor)
        raise GraphCacheError(f'{store.folder / name}: build folder {reason}')
    return Build(store.folder / name, descriptor, -1)


def run_job(job: Path) -> Entry:
    """
    Build the entry a job file describes (in the child process); return it.

    A lock file keeps two builders (two nodes, or a reload) from compiling the same entry at
    once: the second waits, then finds the first one's entry and stops there.
    """
    store = open_store(job.parent.parent, create=False)
    if store is None:
        raise GraphCacheError(f'{job.parent.parent}: the cache folder is gone')
    with store:
        build = _open_build(store, job.parent.name)
        try:
            descriptor = os.open(job.name, os.O_RDONLY | NO_FOLLOW, dir_fd=build.fd)
            with os.fdopen(descriptor, 'rb') as stream:
                description = torch.load(stream, map_location='cpu', weights_only=True)
            key = GraphKey.from_json(description['key'])
            torch.set_num_threads(key.threads)
            network = NetworkSpec.from_json(description['network']).build()
            network.load_state_dict(description['state_dict'])
            if weights_sha256(network) != key.weights_sha256:
                raise GraphCacheError(f'{job}: its weights are not the ones its key names')
            entry = Entry(store.folder, key)
            with store.lock(entry.lock_name):
                try:
                    with entry.checked(store):
                        return entry  # built by another process while this one waited
                except GraphCacheError:
                    entry.remove(store)
                started = time.monotonic()
                # One compiler process: a robot's other programs keep the remaining cores.
                with inductor_config_patch(compile_threads=1):
                    build_package(prepare_network(network, key.precision), key,
                                  build.path_of(BUILT_PACKAGE),
                                  autotune=description['autotune'])
                entry.install(store, build, BUILT_PACKAGE, time.monotonic() - started)
            return entry
        finally:
            build.close()


def exit_with_parent(job: Path, parent: int, poll_s: float = 1.0) -> None:
    """
    End this process group once process ``parent`` is no longer its parent.

    A node killed mid-build then leaves no compiler behind, even one killed while this
    process was still importing PyTorch. The builder leads its own process group (see
    graph_switch), so the C++ compilers inductor started end with it. The build folder goes
    with it: the parent is no longer there to remove it.
    """
    import signal
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        _remove_build(job)
        if os.getpgid(0) == os.getpid():  # leading a group of its own: take the compilers
            os.killpg(os.getpid(), signal.SIGKILL)
        os._exit(1)
    threading.Thread(target=watch, name='parent-watch', daemon=True).start()


def _remove_build(job: Path) -> None:
    """Remove the job's build folder, through the checked cache folder only."""
    with contextlib.suppress(Exception):
        store = open_store(job.parent.parent, create=False)
        if store is not None and job.parent.name.startswith('build-'):
            with store:
                remove_name(store.fd, job.parent.name)


def main(argv: Optional[list[str]] = None) -> int:
    """Build one entry in a child: ``python -m espnet_ros.runtime.graph_builder JOB PARENT``."""
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 2 or not arguments[1].isdigit():
        print(f'usage: python -m {BUILDER_MODULE} JOB PARENT_PID', file=sys.stderr)
        return 2
    job = Path(arguments[0])
    if job.name != JOB_FILE:
        print(f'{job}: not a job file of the graph cache', file=sys.stderr)
        return 2
    exit_with_parent(job, int(arguments[1]))
    try:
        os.nice(BUILDER_NICENESS)
        entry = run_job(job)
    except Exception as error:  # noqa: B902 - the parent reads the reason from stderr
        print(f'graph build failed: {type(error).__name__}: {error}', file=sys.stderr)
        return 1
    print(entry.package)
    return 0


def exit_now(status: int) -> NoReturn:
    """
    End the child with ``status`` once its output is flushed, skipping the interpreter's teardown.

    Tearing down an interpreter with torch loaded takes about a second of CPU, at the child's
    lowered priority: beside two busy processes that took 14-19 s here (once over 120 s in the
    test suite), and the parent waits for the exit before it takes the graph. Nothing is left
    to clean up: the build folder is closed and every compiler has ended.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == '__main__':
    exit_now(main())
