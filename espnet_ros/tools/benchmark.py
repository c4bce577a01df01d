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
timed twice per repetition: the network alone (a preprocessed batch to logits) and the
whole frame path of the node (rgb8 message bytes -> :func:`decode_image` -> :func:`run_frame`
with colour and overlay -> mono8/rgb8 messages). Repetitions go round-robin over the
variants, starting one further each round, so that load from other processes hits every
variant alike; only figures from the same run are compared.

Agreement is the fraction of pixels whose label equals the baseline's, over real images at
the network resolution. ``host_peak_mb`` is the rise of the process's peak resident memory
(VmHWM, reset before each variant) while the variant is built and warmed up: its own copy
of the weights, compiled code or ONNX session, activations and allocator growth; the Python
runtime and the loaded checkpoint are not in it. ``gpu_peak_mb`` is
``torch.cuda.max_memory_allocated`` over the same span.
"""

from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from espnet_ros.streaming.stats import percentile
from espnet_ros.tools.benchmark_worker import prepare_in_worker
from espnet_ros.tools.variants import (camera_message, count_flops, KINDS, prepare_here, Prepared,
                                       unavailable, Variant)
from espnet_ros.zoo.registry import ModelSpec


def prepare(spec: ModelSpec, network: nn.Module, variant: Variant, size: tuple[int, int],
            message: dict[str, Any], warmup: int) -> Prepared:
    """Build ``variant`` (in a process of its own if it needs one), warm it up."""
    if not variant.retain_host_memory:
        return prepare_in_worker(spec, network, variant, size, message, warmup)
    return prepare_here(spec, network, variant, size, message, warmup)


def time_round_robin(prepared: Sequence[Prepared], repeats: int) -> None:
    """Time every variant's calls ``repeats`` times, interleaved, into ``times_ms``."""
    for round_index in range(repeats):
        start = round_index % len(prepared)
        for item in list(prepared[start:]) + list(prepared[:start]):
            for kind in KINDS:
                item.times_ms[kind].append(item.time_call(kind))


def agreement(labels: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """Return the fraction of pixels of ``labels`` equal to ``reference``."""
    equal = sum(int((mine == theirs).sum()) for mine, theirs in zip(labels, reference))
    return equal / sum(theirs.size for theirs in reference)


def _row(spec: ModelSpec, size: tuple[int, int], item: Prepared, kind: str,
         baseline_ms: float) -> dict[str, Any]:
    variant, times = item.variant, np.asarray(item.times_ms[kind])
    median = float(np.median(times))
    return {
        'model': spec.name, 'size': f'{size[0]}x{size[1]}', 'device': variant.device,
        'precision': variant.precision, 'backend': variant.backend, 'variant': variant.label,
        'kind': kind, 'median_ms': median, 'p99_ms': percentile(times, 99),
        'mean_ms': float(times.mean()), 'fps': 1e3 / median, 'speedup': baseline_ms / median,
        'host_peak_mb': item.host_peak_mb, 'gpu_peak_mb': item.gpu_peak_mb,
        'fold': variant.fold, 'channels_last': variant.channels_last,
        'cuda_graph': variant.cuda_graph, 'retain_host_memory': variant.retain_host_memory,
        'preprocessing': 'host' if variant.host_preprocess or variant.device == 'cpu'
        else 'device', 'repeats': len(times), 'threads': torch.get_num_threads()}


def run(spec: ModelSpec, network: nn.Module, size: tuple[int, int],
        variants: Sequence[Variant], *, images: Sequence[np.ndarray],
        camera_size: tuple[int, int], repeats: int, warmup: int,
        log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """
    Measure ``variants`` of ``network`` at ``size``; return one row per variant and kind.

    ``images`` are BGR uint8 frames: the first, resized to ``camera_size``, is the camera
    frame; all of them are used for agreement. Variants that cannot run are logged and
    skipped; without a runnable baseline nothing is measured.
    """
    message = camera_message(images[0], camera_size)
    prepared = []
    for variant in variants:
        reason = unavailable(variant)
        if reason is None:
            try:
                prepared.append(prepare(spec, network, variant, size, message, warmup))
            except Exception as error:  # a fast path that fails here is reported, not fatal
                reason = f'{type(error).__name__}: {error}'
        if reason is not None:
            log(f'skipped {variant.label} on {variant.device}: {reason}')
    try:
        return _measure(spec, network, size, prepared, images=images,
                        camera_size=camera_size, repeats=repeats, log=log)
    finally:
        for item in prepared:
            item.close()


def _measure(spec: ModelSpec, network: nn.Module, size: tuple[int, int],
             prepared: Sequence[Prepared], *, images: Sequence[np.ndarray],
             camera_size: tuple[int, int], repeats: int,
             log: Callable[[str], None]) -> list[dict[str, Any]]:
    base = next((item for item in prepared if item.variant.is_baseline), None)
    if base is None:
        log(f'no baseline for {spec.name} at {size[0]}x{size[1]}: nothing measured')
        return []
    reference = base.labels(images)
    agreements = {id(item): agreement(item.labels(images), reference) for item in prepared}
    time_round_robin(prepared, repeats)
    flops = count_flops(network, size)
    params = sum(parameter.numel() for parameter in network.parameters())
    rows = []
    for item in prepared:
        for kind in KINDS:
            row = _row(spec, size, item, kind, float(np.median(base.times_ms[kind])))
            row.update(agreement=agreements[id(item)], flops=flops, params=params,
                       camera=f'{camera_size[0]}x{camera_size[1]}',
                       agreement_pixels=sum(labels.size for labels in reference))
            rows.append(row)
    return rows
