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
How an engine is configured, and the one place where a configuration is checked.

:class:`EngineConfig` holds what a caller asks for, in the words of
:mod:`espnet_ros.runtime.options` (``auto`` included). :meth:`EngineConfig.resolve` turns it,
for one model, into a :class:`ResolvedConfig`: the device, the runner's backend and
precision, the network input size and the precision of the cached compiled graph, or
raises :class:`EngineConfigError` with the reason. Nothing else checks these settings.

Compiling has one name, ``compile_mode``: ``jit`` compiles in the process at the first frame
(every start), ``cached`` and ``background`` move to a compiled graph kept on disk. Backend
``torch-compile`` is the older spelling of backend torch with compile_mode ``jit``; it stays
accepted (parameters, command line, scripts) and resolves to the same engine.
"""

from dataclasses import dataclass, field
import math
from pathlib import Path
from typing import Optional, Sequence

import torch

from espnet_ros.runtime.mixed_precision import cpu_bf16_supported
from espnet_ros.runtime.onednn_plan import find_onednn
from espnet_ros.runtime.options import (Backend, choice_error, CompileMode, DEFAULT_BACKEND,
                                        device_error, Precision)
from espnet_ros.zoo.registry import FAMILIES, ModelSpec

# The dtype of the tensors between layers; 'mixed' is fp32 with bf16 in the convolutions
# the network names as tolerant of it (see espnet_ros.runtime.mixed_precision).
DTYPES = {Precision.FP32: torch.float32, Precision.FP16: torch.float16,
          Precision.BF16: torch.bfloat16, Precision.MIXED: torch.float32,
          Precision.INT8: torch.float32}  # int8 inside the ONNX graph, float at its input
# What ONNX Runtime runs here.
ONNX_PRECISIONS = (Precision.FP32, Precision.INT8)
# What the oneDNN plan runs, and the families it lays out (espnet_ros.runtime.onednn_plan).
ONEDNN_PRECISIONS = (Precision.FP32, Precision.MIXED)
ONEDNN_FAMILIES = ('espnet', 'espnet_c')
# What a compiled graph of the cache is built in.
GRAPH_PRECISIONS = (Precision.FP32, Precision.MIXED)
# The compile modes that look for a compiled graph on disk.
CACHE_MODES = (CompileMode.CACHED, CompileMode.BACKGROUND)


class EngineConfigError(ValueError):
    """A device, precision, backend or resolution the engine cannot use, with the reason."""


@dataclass(frozen=True)
class RunnerOptions:
    """
    The PyTorch runner's fast paths, each on by default.

    ``fold``: batch norms folded into the convolutions; ``channels_last``: NHWC memory;
    ``cuda_graph``: one CUDA graph launch per frame (None: on for CUDA devices);
    ``fused_head``: on the CPU, eager frames of a network that ends in ESPNet's last layer
    take their labels from the C kernel of :mod:`espnet_ros.runtime.phase_labels`, as the
    compiled graphs do. The benchmark turns them off one by one to show each one's gain, and
    ``keep_subnormals`` on for its anchor row of the network as the checkpoint has it.
    """

    fold: bool = True
    channels_last: bool = True
    cuda_graph: Optional[bool] = None
    fused_head: bool = True
    keep_subnormals: bool = False


@dataclass(frozen=True)
class EngineConfig:
    """
    What an engine is asked to be; every field has the default of a one-shot command.

    ``input_size``: network input (width, height), None or a 0 side as
    :func:`check_input_size` says. ``preprocess_on_device``: resize on the GPU (uint8
    upload) rather than with OpenCV. ``cache``: the folder of compiled graphs (default
    :func:`~espnet_ros.runtime.graph_store.cache_folder`); ``autotune``: a graph built there
    also times inductor's GEMM templates against oneDNN.
    """

    device: str = 'cpu'
    precision: str = Precision.FP32
    backend: str = DEFAULT_BACKEND
    compile_mode: str = CompileMode.EAGER
    input_size: Optional[tuple[int, int]] = None
    preprocess_on_device: bool = True
    runner: RunnerOptions = field(default_factory=RunnerOptions)
    cache: Optional[Path] = None
    autotune: bool = True

    def resolve(self, spec: ModelSpec, *, mixed_supported: bool = True,
                calibrated: bool = False) -> 'ResolvedConfig':
        """
        Return what this configuration means for ``spec``, or raise why it cannot run.

        ``mixed_supported``: the network names its bf16-tolerant convolutions (unknown
        before it is loaded: assumed); ``calibrated``: calibration frames are given, which
        precision int8 needs.
        """
        return resolve(self, spec, mixed_supported=mixed_supported, calibrated=calibrated)


@dataclass(frozen=True)
class ResolvedConfig:
    """An :class:`EngineConfig` as it runs for one model: nothing left on ``auto``."""

    config: EngineConfig
    device: torch.device
    input_size: tuple[int, int]  # (width, height)
    backend: str  # the runner: torch, torch-compile (compile_mode jit), onnxruntime or onednn
    precision: str  # the runner's
    compile_mode: str  # after the older spelling backend torch-compile
    graph_precision: Optional[str]  # the cached compiled graph's; None: no cached graph
    no_graph_reason: str  # why graph_precision is None with compile_mode cached/background
    notes: tuple[str, ...] = ()  # what the resolution read differently than written

    @property
    def dtype(self) -> torch.dtype:
        """Return the dtype of the tensors between layers."""
        return DTYPES[Precision(self.precision)]

    @property
    def mixed(self) -> bool:
        """Return True for bf16 in the network's tolerant convolutions."""
        return self.precision == Precision.MIXED


def resolve_device(device: str) -> torch.device:
    """Return the torch device for 'auto', 'cpu', 'cuda' or 'cuda:N'; refuse unusable ones."""
    reason = device_error(device)
    if reason:
        raise EngineConfigError(reason)
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    resolved = torch.device(device)
    if resolved.type == 'cuda':
        if not torch.cuda.is_available():
            raise EngineConfigError(f'device {device!r} asked for, but CUDA is not available '
                                    f'(torch {torch.__version__}, built for CUDA '
                                    f'{torch.version.cuda}); use device cpu or auto')
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise EngineConfigError(f'device {device!r}: only {torch.cuda.device_count()} CUDA '
                                    'devices are present')
    return resolved


def check_input_size(spec: ModelSpec, size: Optional[Sequence[int]]) -> tuple[int, int]:
    """
    Return the network input (width, height) that ``size`` asks for, or raise with the reason.

    None or 0x0 is the training size. A side given as 0 follows the other at the training
    aspect ratio, rounded to the nearest multiple of the network's stride
    (``spec.size_multiple``); a side given must be a positive multiple of it.
    """
    multiple = spec.size_multiple
    width, height = tuple(size) if size else (0, 0)
    for side, value in (('width', width), ('height', height)):
        if value < 0 or value % multiple:
            lower = value // multiple * multiple
            nearest = f'{lower} or {lower + multiple}' if lower > 0 else str(multiple)
            raise EngineConfigError(
                f'network input {side} {value} for {spec.name}: width and height must be '
                f"positive multiples of {multiple}, the network's stride (nearest: {nearest}; "
                '0 follows the other side at the training aspect ratio)')
    train_width, train_height = spec.input_size
    if not width and not height:
        return train_width, train_height
    if not height:
        height = nearest_multiple(width * train_height / train_width, multiple)
    elif not width:
        width = nearest_multiple(height * train_width / train_height, multiple)
    return width, height


def nearest_multiple(value: float, multiple: int) -> int:
    """Return the positive multiple of ``multiple`` nearest to ``value`` (halves round up)."""
    return max(math.floor(value / multiple + 0.5), 1) * multiple


def describe_input_size(spec: ModelSpec, size: Optional[Sequence[int]]) -> str:
    """Return 'WxH' as run for ``size``, saying where a side given as 0 came from."""
    width, height = check_input_size(spec, size)
    asked = tuple(size) if size else (0, 0)
    text = f'{width}x{height}'
    if asked == (0, 0):
        return f'{text} (the training size)'
    if 0 in asked:
        derived = 'height' if asked[1] == 0 else 'width'
        return (f'{text} ({derived} from the training aspect ratio '
                f'{spec.input_size[0]}x{spec.input_size[1]}, rounded to a multiple of '
                f'{spec.size_multiple})')
    return text


def onnxruntime_available() -> bool:
    """Return True if ONNX Runtime can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _check_words(config: EngineConfig) -> None:
    for vocabulary, name, value in ((Precision, 'precision', config.precision),
                                    (CompileMode, 'compile_mode', config.compile_mode)):
        reason = choice_error(vocabulary, name, value)
        if reason:
            raise EngineConfigError(reason)
    if config.backend not in Backend.values():
        raise EngineConfigError(f'backend {config.backend!r} is not one of '
                                f'{", ".join(Backend.values())}')


def _compile_mode(config: EngineConfig) -> tuple[str, tuple[str, ...]]:
    """Return the compile mode meant, with a note where backend torch-compile set it."""
    if config.backend != Backend.TORCH_COMPILE:
        return CompileMode(config.compile_mode).value, ()
    note = ('backend torch-compile is the older spelling of backend torch with compile_mode '
            'jit (compiled in this process at every start)')
    if config.compile_mode not in (CompileMode.EAGER, CompileMode.JIT):
        note += f'; compile_mode {config.compile_mode} set aside, no graph from the cache'
    return CompileMode.JIT.value, (note,)


def _onednn_backend(spec: ModelSpec, mode: str, device: torch.device) -> str:
    """Return backend onednn if it can run ``spec`` here; raise why not otherwise."""
    if mode == CompileMode.JIT:
        raise EngineConfigError('compile_mode jit compiles PyTorch; backend onednn builds its '
                                'own plan (use compile_mode eager)')
    if device.type != 'cpu':
        raise EngineConfigError(f'backend onednn runs on the CPU, not {device}')
    if spec.family not in ONEDNN_FAMILIES:
        raise EngineConfigError(f'backend onednn runs ESPNet and ESPNet-C; {spec.name} is of '
                                f'family {spec.family} (use backend auto)')
    _, missing = find_onednn()
    if missing:
        raise EngineConfigError(f'backend onednn asked for, but {missing}')
    return Backend.ONEDNN.value


def _runner_backend(config: EngineConfig, spec: ModelSpec, mode: str,
                    device: torch.device) -> str:
    """Return the runner's backend: auto is eager PyTorch, compiled with compile_mode jit."""
    if config.backend == Backend.ONEDNN:
        return _onednn_backend(spec, mode, device)
    if config.backend == Backend.ONNXRUNTIME:
        if mode == CompileMode.JIT:
            raise EngineConfigError('compile_mode jit compiles PyTorch; backend onnxruntime '
                                    'runs its own graph (use compile_mode eager)')
        if device.type != 'cpu':
            raise EngineConfigError('backend onnxruntime runs on the CPU here; use torch for '
                                    'CUDA (or export the model and run it with TensorRT)')
        if not onnxruntime_available():
            raise EngineConfigError('backend onnxruntime asked for, but onnxruntime is not '
                                    'installed')
        return Backend.ONNXRUNTIME.value
    return (Backend.TORCH_COMPILE if mode == CompileMode.JIT else Backend.TORCH).value


def _precision(precision: str, device: torch.device, backend: str, *,
               mixed_possible: bool, mixed_supported: bool, calibrated: bool) -> str:
    """
    Return the runner's precision for ``precision`` on ``device`` through ``backend``.

    'auto' is fp16 on CUDA. On the CPU it is 'mixed' for a compiled network (or the oneDNN
    plan) that supports it on a CPU with native bf16, else fp32: plain bf16 was faster but its
    labels agreed with fp32 on under 99.5% of pixels, and eager 'mixed' gained nothing (see
    the README).
    """
    if precision == Precision.AUTO:
        if device.type == 'cuda':
            return Precision.FP16.value
        compiled = backend in (Backend.TORCH_COMPILE, Backend.ONEDNN)
        return (Precision.MIXED if compiled and mixed_possible else Precision.FP32).value
    if precision == Precision.INT8 and (device.type != 'cpu' or backend != Backend.ONNXRUNTIME):
        raise EngineConfigError('precision int8 runs on the CPU with backend onnxruntime '
                                f'(static quantization); got device {device}, backend {backend}')
    if precision == Precision.FP16 and device.type == 'cpu':
        raise EngineConfigError('precision fp16 is for CUDA devices; on the CPU use fp32, '
                                'mixed or bf16')
    if precision == Precision.MIXED and not mixed_possible:
        raise EngineConfigError(
            'precision mixed needs the CPU (on CUDA use fp16), native bf16 on it '
            f'(AVX512-BF16 or AMX: {"present" if cpu_bf16_supported() else "absent"}) and a '
            'network that names its bf16-tolerant convolutions (the ESPNet family does; '
            f'this one {"does" if mixed_supported else "does not"})')
    if backend == Backend.ONNXRUNTIME and precision not in ONNX_PRECISIONS:
        raise EngineConfigError(f'backend onnxruntime runs fp32 or int8, not {precision}')
    if backend == Backend.ONEDNN and precision not in ONEDNN_PRECISIONS:
        raise EngineConfigError(f'backend onednn runs fp32 or mixed, not {precision}')
    if precision == Precision.INT8 and not calibrated:
        raise EngineConfigError("precision int8 needs calibration frames of the model's own "
                                'dataset (espnet-ros: --calibration DIR)')
    return Precision(precision).value


def _graph_precision(config: EngineConfig, spec: ModelSpec, mode: str, device: torch.device,
                     mixed_possible: bool) -> tuple[Optional[str], str]:
    """Return the precision of the cached compiled graph, or None and why there is none."""
    if mode not in CACHE_MODES:
        return None, f'compile_mode {mode} keeps no graph on disk'
    if config.backend != Backend.AUTO or device.type != 'cpu':
        return None, (f'compiled graphs are cached for backend auto on the CPU (here '
                      f'backend {config.backend} on {device})')
    if spec.family not in FAMILIES:
        return None, f'{spec.name} is not of a registry architecture'
    # The graph is compiled: 'auto' means what it means for compile_mode jit.
    precision = (Precision.MIXED if mixed_possible else Precision.FP32
                 ).value if config.precision == Precision.AUTO else config.precision
    if precision not in GRAPH_PRECISIONS:
        return None, f'compiled graphs are built in fp32 or mixed, not {precision}'
    return precision, ''


def resolve(config: EngineConfig, spec: ModelSpec, *, mixed_supported: bool = True,
            calibrated: bool = False) -> ResolvedConfig:
    """Return ``config`` as it runs ``spec`` (see :meth:`EngineConfig.resolve`)."""
    _check_words(config)
    input_size = check_input_size(spec, config.input_size)
    device = resolve_device(config.device)
    mode, notes = _compile_mode(config)
    backend = _runner_backend(config, spec, mode, device)
    mixed_possible = device.type == 'cpu' and mixed_supported and cpu_bf16_supported()
    precision = _precision(config.precision, device, backend, mixed_possible=mixed_possible,
                           mixed_supported=mixed_supported, calibrated=calibrated)
    graph_precision, reason = _graph_precision(config, spec, mode, device, mixed_possible)
    return ResolvedConfig(config=config, device=device, input_size=input_size,
                          backend=backend, precision=precision, compile_mode=mode,
                          graph_precision=graph_precision, no_graph_reason=reason,
                          notes=notes)
