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
The benchmark's variants: how each is built as an engine, warmed up and timed in place.

The benchmark runs them side by side; its worker module builds the ones that need a
process of their own. Both import this module, never each other.
"""

import array
import ctypes
from dataclasses import dataclass, replace
import gc
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from espnet_ros.imaging.codec import decode_image, encode_mono8, encode_rgb8
from espnet_ros.imaging.files import camera_rgb
from espnet_ros.imaging.pipeline import OutputRequest, run_frame
from espnet_ros.runtime.config import onnxruntime_available
from espnet_ros.runtime.engine import EngineConfig, RunnerOptions, SegmentationEngine
from espnet_ros.runtime.host_memory import retain_freed_memory
from espnet_ros.runtime.mixed_precision import cpu_bf16_supported
from espnet_ros.runtime.onednn_plan import load_plan_library
from espnet_ros.tools import procfs
from espnet_ros.zoo.registry import ModelSpec

KINDS = ('network', 'frame')
FRAME_REQUEST = OutputRequest(color=True, overlay=True)


@dataclass(frozen=True)
class Variant:
    """One way of running the network: backend, precision and PyTorch options."""

    label: str
    device: str  # 'cpu' or 'cuda'
    backend: str  # 'torch', 'onnxruntime', 'onednn' or 'auto'; compiling: compile_mode
    precision: str = 'fp32'
    fold: bool = True
    channels_last: bool = True
    cuda_graph: bool = False
    # The CPU's eager labels from the fused C kernel (RunnerOptions.fused_head).
    fused_head: bool = True
    host_preprocess: bool = False  # CUDA: resize and normalise on the CPU, upload floats
    # False: glibc's default malloc settings, which are process-wide, so the variant runs
    # in a process of its own (see espnet_ros.runtime.host_memory and benchmark_worker).
    retain_host_memory: bool = True
    # 'jit': compiled in the process at every start (backends torch and auto).
    # 'background': backend auto once it has switched to the compiled graph kept on disk
    # (built into the user's cache the first time, loaded from it afterwards).
    compile_mode: str = 'eager'
    # True: the checkpoint's weights as loaded, subnormals kept (the network the authors' own
    # code runs); every other variant runs the network with them set to zero.
    keep_subnormals: bool = False

    @property
    def is_baseline(self) -> bool:
        """Return True for plain eager fp32 PyTorch, the authors' way, subnormals flushed."""
        return (self.backend, self.precision, self.fold, self.channels_last, self.cuda_graph,
                self.fused_head, self.host_preprocess, self.retain_host_memory,
                self.keep_subnormals) == (
                    'torch', 'fp32', False, False, False, False, False, False, False)

    @property
    def is_anchor(self) -> bool:
        """Return True for a row that always runs: the baseline, and it as loaded."""
        return self.is_baseline or self == as_loaded(self.device)


def baseline(device: str) -> Variant:
    """Return eager fp32 PyTorch: no folding, NCHW memory, glibc's malloc defaults."""
    return Variant('eager fp32 (baseline)', device, 'torch', fold=False, channels_last=False,
                   fused_head=False, retain_host_memory=False)


def as_loaded(device: str) -> Variant:
    """Return the baseline on the checkpoint's weights as loaded, subnormals kept."""
    return replace(baseline(device), label='eager fp32, subnormal weights as loaded',
                   keep_subnormals=True)


def default_variants(device: str, *, compile_network: bool = False) -> list[Variant]:
    """Return the baseline and every fast path worth measuring on ``device``."""
    if device == 'cpu':
        found = [baseline('cpu'), as_loaded('cpu'),
                 Variant('torch fp32 retain memory', 'cpu', 'torch', fold=False,
                         channels_last=False, fused_head=False),
                 Variant('torch fp32 fold', 'cpu', 'torch', channels_last=False,
                         fused_head=False),
                 Variant('torch fp32 channels-last', 'cpu', 'torch', fold=False,
                         fused_head=False),
                 Variant('torch fp32 fold+cl', 'cpu', 'torch', fused_head=False),
                 Variant('torch fp32 fold+cl+fused head', 'cpu', 'torch'),
                 Variant('torch bf16 fold+cl', 'cpu', 'torch', 'bf16'),
                 Variant('torch mixed fold+cl', 'cpu', 'torch', 'mixed'),
                 Variant('onnxruntime fp32', 'cpu', 'onnxruntime'),
                 Variant('onednn plan fp32', 'cpu', 'onednn'),
                 Variant('onednn plan mixed', 'cpu', 'onednn', 'mixed')]
        compiled = [Variant('torch fp32, compile_mode jit', 'cpu', 'torch', compile_mode='jit'),
                    Variant('torch mixed, compile_mode jit', 'cpu', 'torch', 'mixed',
                            compile_mode='jit'),
                    Variant('torch bf16, compile_mode jit', 'cpu', 'torch', 'bf16',
                            compile_mode='jit'),
                    Variant('auto fp32, compiled graph from the cache', 'cpu', 'auto',
                            compile_mode='background'),
                    Variant('auto mixed, compiled graph from the cache', 'cpu', 'auto',
                            'mixed', compile_mode='background')]
    else:
        graph = Variant('torch fp16 fold+cl+graph', device, 'torch', 'fp16', cuda_graph=True)
        found = [baseline(device), as_loaded(device),
                 Variant('torch fp32 fold+cl', device, 'torch'),
                 Variant('torch fp16 fold+cl', device, 'torch', 'fp16'),
                 graph,
                 replace(graph, label='torch fp16 graph, CPU preprocessing',
                         host_preprocess=True),
                 Variant('torch bf16 fold+cl+graph', device, 'torch', 'bf16', cuda_graph=True)]
        compiled = [replace(graph, label='torch fp16 graph, compile_mode jit',
                            compile_mode='jit')]
    return found + (compiled if compile_network else [])


def unavailable(variant: Variant) -> Optional[str]:
    """Return why ``variant`` cannot run on this machine, or None if it can."""
    if variant.device.startswith('cuda') and not torch.cuda.is_available():
        return 'CUDA is not available'
    if (variant.device == 'cpu' and variant.precision in ('bf16', 'mixed')
            and not cpu_bf16_supported()):
        return 'this CPU has no native bf16 (AVX512-BF16 or AMX)'
    if variant.backend == 'onnxruntime' and not onnxruntime_available():
        return 'onnxruntime is not installed'
    if variant.backend == 'onednn':
        return load_plan_library()  # oneDNN's wheels, a compiler, the build
    return None


def build_engine(spec: ModelSpec, network: nn.Module, variant: Variant,
                 size: tuple[int, int]) -> SegmentationEngine:
    """Return an engine that runs ``network`` the way ``variant`` says (once switched)."""
    engine = SegmentationEngine(spec, network, EngineConfig(
        input_size=size, device=variant.device, precision=variant.precision,
        backend=variant.backend, preprocess_on_device=not variant.host_preprocess,
        runner=RunnerOptions(fold=variant.fold, channels_last=variant.channels_last,
                             cuda_graph=variant.cuda_graph, fused_head=variant.fused_head,
                             keep_subnormals=variant.keep_subnormals),
        compile_mode=variant.compile_mode))
    switch = engine.start_background()
    if switch is not None:
        switch.wait()
        if not engine.compiled:
            raise RuntimeError(f'{variant.label}: {switch.describe()}')
    return engine


def count_flops(network: nn.Module, size: tuple[int, int]) -> int:
    """Return the floating-point operations of one W x H frame through ``network``."""
    width, height = size
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        network(torch.zeros(1, 3, height, width))
    return int(counter.get_total_flops())


def camera_message(image_bgr: np.ndarray, size: tuple[int, int]) -> dict[str, Any]:
    """Return the fields of an rgb8 sensor_msgs/Image of ``image_bgr`` resized to W x H."""
    rgb = camera_rgb(image_bgr, size)
    data = array.array('B')  # what rclpy hands a callback
    data.frombytes(rgb.tobytes())
    return {'encoding': 'rgb8', 'height': size[1], 'width': size[0], 'step': 3 * size[0],
            'data': data}


def frame_path(engine: SegmentationEngine, message: dict[str, Any]) -> None:
    """Run one camera message through the node's per-frame work, outputs packed."""
    image = decode_image(message['encoding'], message['height'], message['width'],
                         message['step'], message['data'])
    outputs = run_frame(engine, image, FRAME_REQUEST)
    encode_mono8(outputs.labels)
    encode_rgb8(outputs.color)
    encode_rgb8(outputs.overlay)


def _reset_peak_rss() -> bool:
    """Return freed heap to the system and reset VmHWM to the current RSS (Linux >= 4.0)."""
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
        with open('/proc/self/clear_refs', 'w') as clear_refs:
            clear_refs.write('5')
    except (OSError, AttributeError):
        return False
    return True


def _synchronised(device: torch.device, call: Callable[[], Any]) -> Callable[[], Any]:
    if device.type != 'cuda':
        return call

    def run() -> Any:
        result = call()
        torch.cuda.synchronize(device)
        return result
    return run


@dataclass
class Prepared:
    """A built variant: how to time it and label images, and the memory building it took."""

    variant: Variant
    time_call: Callable[[str], float]  # run one call of a kind, return its milliseconds
    labels: Callable[[Sequence[np.ndarray]], list]  # see network_labels
    host_peak_mb: Optional[float]
    gpu_peak_mb: Optional[float]
    times_ms: dict[str, list[float]]
    close: Callable[[], None] = lambda: None


def _timer(call: Callable[[], Any]) -> Callable[[], float]:
    def timed() -> float:
        began = time.perf_counter()
        call()
        return (time.perf_counter() - began) * 1e3
    return timed


def prepare_here(spec: ModelSpec, network: nn.Module, variant: Variant,
                 size: tuple[int, int], message: dict[str, Any], warmup: int) -> Prepared:
    """Build ``variant`` in this process, warm it up, and note the memory that took."""
    if variant.retain_host_memory:
        # The benchmark opts in as the node does; the baseline runs in a process of its own.
        retain_freed_memory()
    cuda = variant.device.startswith('cuda')
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    reset = _reset_peak_rss()
    before = procfs.status_kib('VmRSS')
    engine = build_engine(spec, network, variant, size)
    image = decode_image(message['encoding'], message['height'], message['width'],
                         message['step'], message['data'])
    batch = engine.preprocess([image.pixels], image.order)
    # Every variant's network time ends in the same labels (the baseline's arg-max is the
    # authors' own last step), as a compiled graph gives no logits.
    calls = {'network': _synchronised(engine.device,
                                      lambda: engine.labels_and_confidence(batch)),
             'frame': _synchronised(engine.device, lambda: frame_path(engine, message))}
    for _ in range(max(warmup, 1)):
        for call in calls.values():
            call()
    peak = procfs.status_kib('VmHWM')
    host_mb = (peak - before) / 1024 if reset and peak and before else None
    gpu_mb = torch.cuda.max_memory_allocated() / 2 ** 20 if cuda else None
    timers = {kind: _timer(call) for kind, call in calls.items()}
    return Prepared(variant, lambda kind: timers[kind](),
                    lambda images: network_labels(engine, images), host_mb, gpu_mb,
                    {kind: [] for kind in KINDS})


def network_labels(engine: SegmentationEngine, images: Sequence[np.ndarray]) -> list:
    """Return the engine's labels at the network resolution for BGR ``images``."""
    return [engine.segment(image, order='bgr', output_resolution='network').labels
            for image in images]
