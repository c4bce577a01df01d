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
Speed of each fast path against the eager fp32 baseline, measured in one run; no ROS.

For one model, network size and device, every :class:`Variant` is built as an engine and
timed twice per repetition: the network alone (a preprocessed batch to labels at the
network resolution: the same output from every variant, the baseline's arg-max being the
authors' own last step) and the whole frame path of the node (rgb8 message bytes ->
:func:`decode_image` -> :func:`run_frame` with colour and overlay -> mono8/rgb8 messages).
Repetitions go round-robin over the variants, starting one further each round, so that load
from other processes hits every variant alike; only figures from the same run are compared.

With a :class:`~espnet_ros.tools.background_load.BackgroundLoad`, every round is timed twice,
quiet and with the load's cores busy (the order alternating between rounds), so that the
loaded figures and their ratios to the quiet ones come from the same run.

Agreement is the fraction of pixels whose label equals the baseline's, over real images at
the network resolution. ``host_peak_mb`` is the rise of the process's peak resident memory
(VmHWM, reset before each variant) while the variant is built and warmed up: its own copy
of the weights, compiled code or ONNX session, activations and allocator growth; the Python
runtime and the loaded checkpoint are not in it. ``gpu_peak_mb`` is
``torch.cuda.max_memory_allocated`` over the same span.
"""

import os
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from espnet_ros.streaming.stats import percentile
from espnet_ros.tools.background_load import BackgroundLoad
from espnet_ros.tools.benchmark_worker import prepare_in_worker
from espnet_ros.tools.procfs import cpu_model
from espnet_ros.tools.variants import (camera_message, count_flops, KINDS, prepare_here, Prepared,
                                       unavailable, Variant)
from espnet_ros.zoo.registry import ModelSpec


def prepare(spec: ModelSpec, network: nn.Module, variant: Variant, size: tuple[int, int],
            message: dict[str, Any], warmup: int) -> Prepared:
    """Build ``variant`` of ``network`` (in a process of its own if it needs one), warm it up."""
    if not variant.retain_host_memory:
        return prepare_in_worker(spec, network, variant, size, message, warmup)
    return prepare_here(spec, network, variant, size, message, warmup)


LOADED_SUFFIX = ' loaded'


def timing_key(kind: str, loaded: bool) -> str:
    """Return the ``times_ms`` key of a kind of call, quiet or under the background load."""
    return kind + LOADED_SUFFIX if loaded else kind


def time_round_robin(prepared: Sequence[Prepared], repeats: int,
                     load: Optional[BackgroundLoad] = None) -> None:
    """
    Time every variant's calls ``repeats`` times, interleaved, into ``times_ms``.

    With ``load``, each round runs quiet and loaded (alternating which goes first), and the
    loaded times go under :func:`timing_key` ``(kind, True)``; the load is paused after.
    """
    for round_index in range(repeats):
        start = round_index % len(prepared)
        phases = (False,) if load is None else (False, True) if round_index % 2 else (True, False)
        for loaded in phases:
            if load is not None:
                load.busy() if loaded else load.quiet()
            for item in list(prepared[start:]) + list(prepared[:start]):
                for kind in KINDS:
                    item.times_ms.setdefault(timing_key(kind, loaded), []).append(
                        item.time_call(kind))
    if load is not None:
        load.quiet()


def agreement(labels: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """Return the fraction of pixels of ``labels`` equal to ``reference``."""
    equal = sum(int((mine == theirs).sum()) for mine, theirs in zip(labels, reference))
    return equal / sum(theirs.size for theirs in reference)


def _row(spec: ModelSpec, size: tuple[int, int], item: Prepared, key: str,
         baseline_ms: float) -> dict[str, Any]:
    variant, times = item.variant, np.asarray(item.times_ms[key])
    median = float(np.median(times))
    kind = key.removesuffix(LOADED_SUFFIX)
    return {
        'model': spec.name, 'size': f'{size[0]}x{size[1]}', 'device': variant.device,
        'precision': variant.precision, 'backend': variant.backend,
        'compile_mode': variant.compile_mode, 'variant': variant.label,
        'kind': kind, 'median_ms': median, 'p99_ms': percentile(times, 99),
        'mean_ms': float(times.mean()), 'fps': 1e3 / median, 'speedup': baseline_ms / median,
        'host_peak_mb': item.host_peak_mb, 'gpu_peak_mb': item.gpu_peak_mb,
        'fold': variant.fold, 'channels_last': variant.channels_last,
        'cuda_graph': variant.cuda_graph, 'retain_host_memory': variant.retain_host_memory,
        'preprocessing': 'host' if variant.host_preprocess or variant.device == 'cpu'
        else 'device', 'repeats': len(times), 'threads': torch.get_num_threads(),
        'openmp_wait_policy': os.environ.get('OMP_WAIT_POLICY', 'default'),
        'subnormal_weights': 'as loaded' if variant.keep_subnormals else 'flushed'}


def run(spec: ModelSpec, network: nn.Module, size: tuple[int, int],
        variants: Sequence[Variant], *, images: Sequence[np.ndarray],
        camera_size: tuple[int, int], repeats: int, warmup: int,
        load: Optional[BackgroundLoad] = None, as_loaded: Optional[nn.Module] = None,
        denormals_flushed: bool = False,
        log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """
    Measure ``variants`` of ``network`` at ``size``; return one row per variant and kind.

    ``as_loaded``: the same checkpoint with its subnormal weights kept, which the variants
    that keep subnormals run (they are skipped without it). ``denormals_flushed``: the
    calling thread flushes denormals, as the node's inference thread does
    (:func:`~espnet_ros.runtime.process.flush_denormals`), and so do the variants built in
    it; those in processes of their own (the authors' network, the anchors) do not.

    With ``load`` (paused while variants are built), also one row per variant and kind
    under it: ``background_load`` says how many cores were busy, ``loaded_over_quiet`` and
    ``p99_over_quiet_median`` compare with the same variant's quiet median.

    ``images`` are BGR uint8 frames: the first, resized to ``camera_size``, is the camera
    frame; all of them are used for agreement. Variants that cannot run are logged and
    skipped; without a runnable baseline nothing is measured.
    """
    message = camera_message(images[0], camera_size)
    prepared = []
    for variant in variants:
        reason = unavailable(variant)
        if reason is None and variant.keep_subnormals and as_loaded is None:
            reason = 'no network with the subnormal weights as loaded was given'
        if reason is None:
            try:
                prepared.append(prepare(spec, as_loaded if variant.keep_subnormals else network,
                                        variant, size, message, warmup))
            except Exception as error:  # a fast path that fails here is reported, not fatal
                reason = f'{type(error).__name__}: {error}'
        if reason is not None:
            log(f'skipped {variant.label} on {variant.device}: {reason}')
    try:
        rows = _measure(spec, network, size, prepared, images=images,
                        camera_size=camera_size, repeats=repeats, load=load, log=log)
        for row in rows:
            row['denormals_flushed'] = denormals_flushed and row['retain_host_memory']
        return rows
    finally:
        for item in prepared:
            item.close()


def _measure(spec: ModelSpec, network: nn.Module, size: tuple[int, int],
             prepared: Sequence[Prepared], *, images: Sequence[np.ndarray],
             camera_size: tuple[int, int], repeats: int, load: Optional[BackgroundLoad],
             log: Callable[[str], None]) -> list[dict[str, Any]]:
    base = next((item for item in prepared if item.variant.is_baseline), None)
    if base is None:
        log(f'no baseline for {spec.name} at {size[0]}x{size[1]}: nothing measured')
        return []
    reference = base.labels(images)
    agreements = {id(item): agreement(item.labels(images), reference) for item in prepared}
    time_round_robin(prepared, repeats, load)
    flops = count_flops(network, size)
    params = sum(parameter.numel() for parameter in network.parameters())
    cpu = cpu_model()
    rows = []
    for loaded in [False] + ([True] if load is not None else []):
        for item in prepared:
            for kind in KINDS:
                key = timing_key(kind, loaded)
                row = _row(spec, size, item, key, float(np.median(base.times_ms[key])))
                row.update(agreement=agreements[id(item)], flops=flops, params=params,
                           camera=f'{camera_size[0]}x{camera_size[1]}',
                           agreement_pixels=sum(labels.size for labels in reference),
                           background_load=load.cores if loaded else 0,
                           cpu=cpu['name'], cpu_isa=cpu['isa'])
                if loaded:
                    quiet_ms = float(np.median(item.times_ms[kind]))
                    row.update(quiet_median_ms=quiet_ms,
                               loaded_over_quiet=row['median_ms'] / quiet_ms,
                               p99_over_quiet_median=row['p99_ms'] / quiet_ms)
                rows.append(row)
    return rows
