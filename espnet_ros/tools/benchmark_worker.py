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
A benchmark variant in a process of its own, timed in step with the others.

The baseline must run with glibc's default malloc settings, and those are process-wide:
once an engine has told malloc to keep freed memory (:mod:`espnet_ros.runtime.host_memory`), no
call in the same process can have the defaults back. So such a variant is built in a
spawned child. The parent asks it for one timed call at a time, in the benchmark's
round-robin order, and waits idle meanwhile, so the two processes never compete for cores;
the child times its own calls, so the pipe costs nothing measured.
"""

import multiprocessing
from multiprocessing.connection import Connection
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from espnet_ros.tools.variants import KINDS, prepare_here, Prepared, Variant
from espnet_ros.zoo.registry import get_spec, ModelSpec


class WorkerError(RuntimeError):
    """The child process failed to build or run its variant."""


def _serve(connection: Connection, model: str, network: nn.Module, variant: Variant,
           size: tuple[int, int], message: dict[str, Any], warmup: int, threads: int) -> None:
    """Child: build the variant, report, then answer requests until told to stop."""
    torch.set_num_threads(threads)  # the parent's count: a spawned child starts with all cores
    try:
        prepared = prepare_here(get_spec(model), network, variant, size, message, warmup)
    except Exception as error:  # reported to the parent, which skips the variant
        connection.send(('error', f'{type(error).__name__}: {error}'))
        return
    connection.send(('ready', prepared.host_peak_mb, prepared.gpu_peak_mb))
    while True:
        request, argument = connection.recv()
        if request == 'time':
            connection.send(prepared.time_call(argument))
        elif request == 'labels':
            connection.send(prepared.labels(argument))
        else:
            return


def _ask(connection: Connection, request: str, argument: Any = None) -> Any:
    connection.send((request, argument))
    return connection.recv()


def prepare_in_worker(spec: ModelSpec, network: nn.Module, variant: Variant,
                      size: tuple[int, int], message: dict[str, Any],
                      warmup: int) -> Prepared:
    """Build ``variant`` in a spawned child; return a :class:`Prepared` that drives it."""
    context = multiprocessing.get_context('spawn')  # a fresh interpreter: fork would copy
    ours, theirs = context.Pipe()                   # this process's malloc settings
    child = context.Process(target=_serve, daemon=True, name=f'bench {variant.label}',
                            args=(theirs, spec.name, network, variant, size, message, warmup,
                                  torch.get_num_threads()))
    child.start()
    theirs.close()
    try:
        status, *details = ours.recv()
    except EOFError:  # it died before it could say why
        child.join()
        raise WorkerError(f'the worker exited with code {child.exitcode}') from None
    if status != 'ready':
        child.join()
        raise WorkerError(details[0])

    def labels(images: Sequence[np.ndarray]) -> list:
        return _ask(ours, 'labels', list(images))

    def close() -> None:
        ours.send(('stop', None))
        child.join()

    host_mb, gpu_mb = details
    return Prepared(variant, lambda kind: _ask(ours, 'time', kind), labels, host_mb, gpu_mb,
                    {kind: [] for kind in KINDS}, close)
