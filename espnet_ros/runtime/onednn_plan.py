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
ESPNet as a oneDNN plan: every primitive created once, each ESP module's merge in one pass.

PyTorch spends 30-50 us of dispatch on each convolution it hands to oneDNN, and ESPNet
(p=2, q=8) has 82 of them, most on 4 to 36 channels; inductor's compiled graph keeps those
calls. A plan (``onednn_plan.cpp``) calls oneDNN's primitives directly, created once per
input shape and thread count with their weights packed once, and does the element-wise work
between them in passes of its own:

* an ESP module's merge (HFF, the residual, batch norm, PReLU) in one pass over the branch
  outputs, which also writes the batch norm + PReLU of the concatenation the module's output
  joins straight into its slice, so a level's concatenation is never built;
* batch norm + PReLU of the other parts of a concatenation, each into its slice;
* PReLU as a post-op of the convolutions that end in one.

In ``mixed`` precision the bf16-tolerant convolutions (the network's own list) read bf16:
the decoder's 3x3 merge from the passes that build its concatenation, an ESP module's
branches from one rounding pass over its reduction (oneDNN's fp32 convolutions write fp32
only). ESPNet's last layer and the arg-max stay in the fused head
(:mod:`espnet_ros.runtime.phase_labels`), which the plan's output feeds as it feeds the
compiled graphs'.

The plan needs oneDNN's headers and library, from PyPI's ``onednn-devel-cpu-gomp`` and
``onednn-cpu-gomp`` (x86-64 Linux; GNU OpenMP, the same runtime as PyTorch's wheels, so one
thread team serves both), and a C++ compiler (``$CXX``, else ``c++``, ``g++`` or
``clang++``). It is compiled on first use in a private temporary folder, loaded, and the
folder removed, as the head's kernel is: nothing on disk is trusted across processes.
:func:`find_onednn`, :func:`load_plan_library` and :func:`plan_unsupported` say why a plan
cannot run; figures in docs/performance.md.
"""

import ctypes
import functools
from importlib import metadata, resources
from pathlib import Path
import platform
import subprocess
import sys
import tempfile
import threading
from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import nn

from espnet_ros.networks.espnet import ESP, ESPEncoder, ESPNet, IMAGE_CHANNELS
from espnet_ros.networks.layers import BNPReLU
from espnet_ros.runtime.folding import batch_norm_affine, folded, folded_fp32_copy
from espnet_ros.runtime.native import BuiltOnce, find_compiler
from espnet_ros.zoo.registry import FAMILIES

SOURCE = 'onednn_plan.cpp'
# PyPI's oneDNN on GNU OpenMP: the runtime library, and the headers for the build.
RUNTIME_DISTRIBUTION = 'onednn-cpu-gomp'
DEVEL_DISTRIBUTION = 'onednn-devel-cpu-gomp'
LIBRARY_NAME = 'libdnnl.so'
HEADER = 'oneapi/dnnl/dnnl.hpp'
COMPILERS = ('c++', 'g++', 'clang++')
COMPILER_FLAGS = ('-O3', '-march=native', '-fopenmp', '-std=c++17', '-shared', '-fPIC')
COMPILE_TIMEOUT_S = 300
MAX_ERROR_CHARS = 300
# onednn_plan.cpp's element types and its most branches per ESP module.
F32, BF16 = 0, 1
MAX_BRANCHES = 8
NO_BUFFER = -1


class PlanError(RuntimeError):
    """oneDNN or the plan refused a step; the message says which and why."""


class OneDNNFiles(NamedTuple):
    """Where oneDNN's headers and library are."""

    include: Path
    library: Path


def onednn_wheels_published() -> bool:
    """Return True where PyPI has the oneDNN wheels the plan builds on (x86-64 Linux)."""
    return sys.platform == 'linux' and platform.machine() == 'x86_64'


@functools.lru_cache(maxsize=1)
def find_onednn() -> tuple[Optional[OneDNNFiles], Optional[str]]:
    """
    Return oneDNN's headers and library from the installed wheels, or None and why not.

    Read from the wheels' file lists once per process: every engine's configuration asks.
    """
    if not onednn_wheels_published():
        return None, (f'PyPI has oneDNN wheels for x86-64 Linux only, not for '
                      f'{platform.machine()} {sys.platform}')
    found = {}
    for distribution, wanted in ((DEVEL_DISTRIBUTION, HEADER),
                                 (RUNTIME_DISTRIBUTION, LIBRARY_NAME)):
        try:
            files = metadata.distribution(distribution).files or []
        except metadata.PackageNotFoundError:
            return None, (f'{distribution} is not installed (pip install '
                          f'{RUNTIME_DISTRIBUTION} {DEVEL_DISTRIBUTION})')
        match = next((file for file in files if str(file).endswith(wanted)), None)
        if match is None:
            return None, f'{distribution} has no {wanted}'
        found[distribution] = Path(match.locate()).resolve()
    header, library = found[DEVEL_DISTRIBUTION], found[RUNTIME_DISTRIBUTION]
    include = header.parents[len(Path(HEADER).parts) - 1]
    return OneDNNFiles(include, library), None


def _build() -> tuple[Optional[ctypes.CDLL], Optional[str]]:
    """Compile and load the plan's library; return it, or None and the reason."""
    onednn, reason = find_onednn()
    if onednn is None:
        return None, reason
    compiler, missing = find_compiler('CXX', COMPILERS)
    if compiler is None:
        return None, missing
    source = resources.files(__package__).joinpath(SOURCE).read_text()
    with tempfile.TemporaryDirectory(prefix='espnet_ros-plan-') as folder:  # 0700
        source_path = Path(folder) / SOURCE
        source_path.write_text(source)
        target = Path(folder) / 'onednn_plan.so'
        command = [compiler, *COMPILER_FLAGS, str(source_path), f'-I{onednn.include}',
                   str(onednn.library), f'-Wl,-rpath,{onednn.library.parent}', '-o', str(target)]
        try:
            result = subprocess.run(command, capture_output=True, text=True,
                                    timeout=COMPILE_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            return None, f'the plan did not compile with {compiler}: {error}'
        if result.returncode != 0:
            last_line = (result.stderr.strip().splitlines() or ['no message'])[-1]
            return None, (f'the plan did not compile with {compiler}: '
                          f'{last_line[:MAX_ERROR_CHARS]}')
        # Loaded while the folder exists; the mapping outlives the file.
        return _declare(ctypes.CDLL(str(target))), None


def _declare(library: ctypes.CDLL) -> ctypes.CDLL:
    """Give the library's functions their C signatures."""
    pointer, size, integer = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    signatures = {
        'espnet_plan_new': (pointer, [size, integer]),
        'espnet_plan_free': (None, [pointer]),
        'espnet_plan_error': (ctypes.c_char_p, [pointer]),
        'espnet_plan_buffer': (integer, [pointer, size, size, size, integer, pointer]),
        'espnet_plan_conv': (integer, [pointer, integer, integer, pointer, pointer]
                             + [size] * 5 + [pointer]),
        'espnet_plan_upsample': (integer, [pointer, integer, integer, pointer, pointer, size,
                                           pointer]),
        'espnet_plan_average_pool': (integer, [pointer, integer, integer, size, size, size]),
        'espnet_plan_affine': (integer, [pointer, integer, size, integer, size, size]
                               + [pointer] * 3),
        'espnet_plan_merge': (integer, [pointer, integer, pointer, integer] + [pointer] * 3
                              + [integer, size] + [pointer] * 3 + [integer, size]),
        'espnet_plan_run': (integer, [pointer]),
        'espnet_plan_steps': (size, [pointer]),
        'espnet_plan_run_timed': (integer, [pointer, pointer]),
    }
    for name, (result, arguments) in signatures.items():
        function = getattr(library, name)
        function.restype, function.argtypes = result, arguments
    return library


_LIBRARY: BuiltOnce[ctypes.CDLL] = BuiltOnce(_build)


def load_plan_library() -> Optional[str]:
    """Build the library if not yet tried; return why plans cannot run here, or None."""
    _LIBRARY.get()
    return _LIBRARY.reason


def _floats(values: torch.Tensor) -> np.ndarray:
    """Return a contiguous float32 copy, every subnormal set to zero (they cost Intel cores)."""
    array = np.ascontiguousarray(values.detach().float().cpu().numpy(), dtype=np.float32)
    array[np.abs(array) < np.finfo(np.float32).tiny] = 0.0
    return array


class Affine(NamedTuple):
    """A per-channel map y = prelu(x * scale + shift, slope), float32 vectors."""

    scale: np.ndarray
    shift: np.ndarray
    slope: np.ndarray

    def part(self, start: int, stop: int) -> 'Affine':
        """Return the map of channels start..stop-1."""
        return Affine(*(np.ascontiguousarray(vector[start:stop]) for vector in self))

    @staticmethod
    def identity(channels: int) -> 'Affine':
        """Return the map that copies (to bf16 where the target is)."""
        return Affine(np.ones(channels, np.float32), np.zeros(channels, np.float32),
                      np.ones(channels, np.float32))


def _slopes(act: nn.PReLU, channels: int) -> np.ndarray:
    """Return a PReLU's slope per channel (a shared slope repeated)."""
    return _floats(act.weight.expand(channels) if act.num_parameters == 1 else act.weight)


def _norm(unit: BNPReLU) -> Affine:
    """Return batch norm + PReLU as one per-channel map."""
    scale, shift = batch_norm_affine(unit.bn)
    return Affine(_floats(scale), _floats(shift), _slopes(unit.act, scale.numel()))


def _pointer(array: Optional[np.ndarray]) -> Optional[int]:
    return None if array is None else array.ctypes.data


def _output_size(size: int, conv: nn.Conv2d, axis: int) -> int:
    """Return a convolution's output length along ``axis`` (0: rows, 1: columns)."""
    kernel, stride = conv.kernel_size[axis], conv.stride[axis]
    padding, dilation = conv.padding[axis], conv.dilation[axis]
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class Plan:
    """One network's oneDNN plan for one input shape, thread count and precision."""

    def __init__(self, library: ctypes.CDLL, batch: int, threads: int) -> None:
        """Start an empty plan; the builder adds its buffers and steps."""
        self._library = library
        self._handle = library.espnet_plan_new(batch, threads)
        if not self._handle:
            raise PlanError('could not create a plan (out of memory)')
        self.batch = batch
        # The weights and per-channel vectors it was given (it holds copies: for inspection).
        self.arrays: list[np.ndarray] = []
        # What each step does, in the order they run (the profile's row names).
        self.steps: list[str] = []
        # Its input and output: tensors it reads and writes in place (see :meth:`tensor`).
        self.image: Optional[torch.Tensor] = None
        self.output: Optional[torch.Tensor] = None
        self._shapes: dict[int, tuple[int, int, int]] = {}
        # Buffers whose contents no later step reads, by (C, H, W, bf16), to be used again:
        # an ESP module's temporaries stay in cache for the next module instead of new memory.
        self._free: dict[tuple[int, int, int, bool], list[int]] = {}
        self._bf16: set[int] = set()

    def __del__(self) -> None:
        """Free the plan's primitives and buffers."""
        handle, self._handle = getattr(self, '_handle', None), None
        if handle:
            self._library.espnet_plan_free(handle)

    def _check(self, status: int, step: str) -> int:
        if status < 0:
            message = self._library.espnet_plan_error(self._handle).decode(errors='replace')
            raise PlanError(f'{step}: {message}')
        return status

    def _added(self, status: int, step: str, source: Optional[int], target: int) -> None:
        """Check a step's status and name it: what it does, and its shapes (C x H x W)."""
        self._check(status, step)
        shapes = ['x'.join(map(str, self.shape(buffer))) for buffer in (source, target)
                  if buffer is not None]
        self.steps.append(f'{step} ' + ' -> '.join(shapes))

    def _keep(self, *arrays: Optional[np.ndarray]) -> None:
        self.arrays.extend(array for array in arrays if array is not None)

    def shape(self, buffer: int) -> tuple[int, int, int]:
        """Return a buffer's channels, height and width."""
        return self._shapes[buffer]

    def buffer(self, channels: int, height: int, width: int, *, bf16: bool = False) -> int:
        """Add an N x C x H x W buffer in NHWC order, or reuse a released one of its kind."""
        free = self._free.get((channels, height, width, bf16))
        if free:
            return free.pop()
        return self._new_buffer(channels, height, width, bf16, None)

    def tensor(self, channels: int, height: int, width: int) -> tuple[int, torch.Tensor]:
        """Add a float32 buffer held by a new channels-last N x C x H x W tensor; return both."""
        memory = torch.empty(self.batch, channels, height, width).contiguous(
            memory_format=torch.channels_last)
        return self._new_buffer(channels, height, width, False, memory.data_ptr()), memory

    def _new_buffer(self, channels: int, height: int, width: int, bf16: bool,
                    memory: Optional[int]) -> int:
        found = self._check(self._library.espnet_plan_buffer(
            self._handle, channels, height, width, BF16 if bf16 else F32, memory), 'buffer')
        self._shapes[found] = (channels, height, width)
        if bf16:
            self._bf16.add(found)
        return found

    def release(self, *buffers: int) -> None:
        """Let later steps write these buffers: no step added after this reads them."""
        for buffer in buffers:
            key = (*self._shapes[buffer], buffer in self._bf16)
            self._free.setdefault(key, []).append(buffer)

    def conv(self, source: int, conv: nn.Conv2d, *, slopes: Optional[np.ndarray] = None,
             target: Optional[int] = None) -> int:
        """Add ``conv`` (square kernel, stride, padding and dilation) from ``source``."""
        if conv.groups != 1 or len(set(conv.stride)) != 1 or len(set(conv.padding)) != 1 \
                or len(set(conv.dilation)) != 1 or not isinstance(conv.padding[0], int):
            raise PlanError(f'the plan takes square ungrouped convolutions, not {conv}')
        channels, height, width = self.shape(source)
        if target is None:
            target = self.buffer(conv.out_channels, _output_size(height, conv, 0),
                                 _output_size(width, conv, 1))
        weight = _floats(conv.weight)
        bias = None if conv.bias is None else _floats(conv.bias)
        self._keep(weight, bias, slopes)
        kernel, stride, dilation = conv.kernel_size, conv.stride[0], conv.dilation[0]
        self._added(self._library.espnet_plan_conv(
            self._handle, source, target, _pointer(weight), _pointer(bias), kernel[0],
            kernel[1], stride, conv.padding[0], dilation, _pointer(slopes)),
            f'convolution {kernel[0]}x{kernel[1]} s{stride} d{dilation}'
            + (' bf16' if source in self._bf16 else ''), source, target)
        return target

    def upsample(self, source: int, conv: nn.ConvTranspose2d, *,
                 slopes: Optional[np.ndarray] = None, target: Optional[int] = None) -> int:
        """Add a k x k stride-k transposed convolution (ESPNet's upsampling) from ``source``."""
        kernel = conv.kernel_size[0]
        if (conv.kernel_size != (kernel, kernel) or conv.stride != (kernel, kernel)
                or conv.padding != (0, 0) or conv.output_padding != (0, 0)
                or conv.dilation != (1, 1) or conv.groups != 1):
            raise PlanError(f'the plan takes k x k stride-k transposed convolutions, not {conv}')
        _, height, width = self.shape(source)
        if target is None:
            target = self.buffer(conv.out_channels, height * kernel, width * kernel)
        weight = _floats(conv.weight)
        bias = None if conv.bias is None else _floats(conv.bias)
        self._keep(weight, bias, slopes)
        self._added(self._library.espnet_plan_upsample(
            self._handle, source, target, _pointer(weight), _pointer(bias), kernel,
            _pointer(slopes)), f'transposed convolution {kernel}x{kernel} s{kernel}', source,
            target)
        return target

    def average_pool(self, source: int, pool: nn.AvgPool2d) -> int:
        """Add a square average pooling that counts the zero padding."""
        kernel, stride, padding = pool.kernel_size, pool.stride, pool.padding
        if not (isinstance(kernel, int) and isinstance(stride, int)
                and isinstance(padding, int) and pool.count_include_pad
                and not pool.ceil_mode and pool.divisor_override is None):
            raise PlanError(f'the plan takes square average pooling that counts padding, '
                            f'not {pool}')
        channels, height, width = self.shape(source)
        size = [(length + 2 * padding - kernel) // stride + 1 for length in (height, width)]
        target = self.buffer(channels, *size)
        self._added(self._library.espnet_plan_average_pool(
            self._handle, source, target, kernel, stride, padding),
            f'average pooling {kernel}x{kernel} s{stride}', source, target)
        return target

    def affine(self, source: int, target: int, target_offset: int, affine: Affine, *,
               source_offset: int = 0) -> None:
        """Add ``affine`` of source's channels into target's channels from ``target_offset``."""
        self._keep(*affine)
        self._added(self._library.espnet_plan_affine(
            self._handle, source, source_offset, target, target_offset, affine.scale.size,
            *map(_pointer, affine)), f'per-channel pass ({affine.scale.size} channels)',
            source, target)

    def merge(self, branches: Sequence[int], residual: Optional[int], norm: Affine,
              first: Optional[tuple[int, int]],
              second: Optional[tuple[Affine, int, int]] = None) -> None:
        """
        Add an ESP merge: HFF of ``branches``, + ``residual``, then ``norm``.

        ``first``: (buffer, channel offset) that gets the result, or None; ``second``:
        (map, buffer, offset) that gets the map of the result as well.
        """
        if not 2 <= len(branches) <= MAX_BRANCHES:
            raise PlanError(f'an ESP merge takes 2 to {MAX_BRANCHES} branches')
        listed = (ctypes.c_int * len(branches))(*branches)
        after, second_buffer, second_offset = second or (None, NO_BUFFER, 0)
        self._keep(*norm, *(after or ()))
        first_buffer, first_offset = first or (NO_BUFFER, 0)
        self._added(self._library.espnet_plan_merge(
            self._handle, len(branches), listed, NO_BUFFER if residual is None else residual,
            *map(_pointer, norm), first_buffer, first_offset,
            *map(_pointer, after or (None,) * 3), second_buffer, second_offset),
            f'ESP merge of {len(branches)} branches' + (' + residual' if residual is not None
                                                        else ''),
            None, first_buffer if first_buffer != NO_BUFFER else second_buffer)

    def run(self) -> None:
        """Run every step once, in order."""
        self._check(self._library.espnet_plan_run(self._handle), 'run')

    def run_timed(self, milliseconds: np.ndarray) -> None:
        """Run every step once, adding each step's milliseconds to ``milliseconds[step]``."""
        if milliseconds.shape != (len(self.steps),) or milliseconds.dtype != np.float64:
            raise ValueError(f'milliseconds must be float64 of shape ({len(self.steps)},)')
        self._check(self._library.espnet_plan_run_timed(
            self._handle, milliseconds.ctypes.data), 'run')


def plan_unsupported(network: nn.Module) -> Optional[str]:
    """Return why the plan cannot run ``network``, or None if it can."""
    encoder = network.encoder if isinstance(network, ESPNet) else network
    if not isinstance(encoder, ESPEncoder):
        return (f'the oneDNN plan runs ESPNet and ESPNet-C, not {type(network).__name__} '
                f'(ESPNetv2 runs on the other backends)')
    if not encoder.shortcuts or encoder.reinforcement is None:
        return 'the oneDNN plan runs ESPNet-C encoders (shortcuts and input reinforcement)'
    return None


class _Builder:
    """Lays out an ESPNet or ESPNet-C network as one plan's buffers and steps."""

    def __init__(self, plan: Plan, bf16_convolutions: set) -> None:
        self.plan = plan
        self.bf16_convolutions = bf16_convolutions

    def esp(self, source: int, module: ESP, name: str, *, keep: bool,
            joins: Optional[tuple[Affine, int, int]] = None) -> Optional[int]:
        """
        Add ``module`` from ``source``; return its output buffer if ``keep``.

        ``joins``: (the concatenation's norm of this part, its buffer, channel offset) that
        also gets the module's output, normalised.
        """
        bf16 = any(f'{name}.branches.{index}' in self.bf16_convolutions
                   for index in range(len(module.branches)))
        reduced = self.plan.conv(source, module.reduce)
        temporaries = [reduced]
        if bf16:
            # oneDNN's float32 convolutions write float32 only: one pass rounds for the branches.
            channels, height, width = self.plan.shape(reduced)
            rounded = self.plan.buffer(channels, height, width, bf16=True)
            self.plan.affine(reduced, rounded, 0, Affine.identity(channels))
            temporaries.append(rounded)
            reduced = rounded
        branches = [self.plan.conv(reduced, branch) for branch in module.branches]
        _, height, width = self.plan.shape(branches[0])
        channels = sum(self.plan.shape(branch)[0] for branch in branches)
        output = self.plan.buffer(channels, height, width) if keep else None
        self.plan.merge(branches, source if module.residual else None, _norm(module.norm),
                        None if output is None else (output, 0), joins)
        self.plan.release(*temporaries, *branches)
        return output

    def stage(self, source: int, modules: nn.Sequential, name: str,
              joins: tuple[Affine, int, int]) -> None:
        """
        Add a stage of residual ESPs whose last output joins a concatenation only.

        ``source`` (the strided ESP's output) and each module's output are read by the next
        module alone, so each is released after it.
        """
        if len(modules) == 0:
            self.plan.affine(source, joins[1], joins[2], joins[0])
            self.plan.release(source)
            return
        for index, module in enumerate(modules):
            last = index == len(modules) - 1
            output = self.esp(source, module, f'{name}.{index}', keep=not last,
                              joins=joins if last else None)
            self.plan.release(source)
            source = output

    def encoder(self, image: int, encoder: ESPEncoder, name: str
                ) -> tuple[int, int, int, int]:
        """Add ESPNet-C; return the stem, level-1, level-2 and level-3 concatenation buffers."""
        plan = self.plan
        stem = plan.conv(image, encoder.stem.conv, slopes=_slopes(
            encoder.stem.act, encoder.stem.conv.out_channels))
        half = plan.average_pool(image, encoder.reinforcement.pool)
        quarter = plan.average_pool(half, encoder.reinforcement.pool)
        stem_channels, height, width = plan.shape(stem)
        norm1 = _norm(encoder.level1_norm)
        level1 = plan.buffer(encoder.level1_channels, height, width)
        plan.affine(stem, level1, 0, norm1.part(0, stem_channels))
        plan.affine(half, level1, stem_channels, norm1.part(stem_channels,
                                                            encoder.level1_channels))
        # Level 2: [the last ESP's output, the strided ESP's, the quarter image].
        width2 = encoder.down2.norm.bn.num_features
        norm2 = _norm(encoder.level2_norm)
        level2_size = self.esp_size(encoder.down2, level1)
        level2 = plan.buffer(encoder.level2_channels, *level2_size)
        down2 = self.esp(level1, encoder.down2, f'{name}down2', keep=True,
                         joins=(norm2.part(width2, 2 * width2), level2, width2))
        self.stage(down2, encoder.stage2, f'{name}stage2', (norm2.part(0, width2), level2, 0))
        plan.affine(quarter, level2, 2 * width2,
                    norm2.part(2 * width2, encoder.level2_channels))
        # Level 3: [the strided ESP's output, the last ESP's].
        width3 = encoder.down3.norm.bn.num_features
        norm3 = _norm(encoder.level3_norm)
        level3 = plan.buffer(2 * width3, *self.esp_size(encoder.down3, level2))
        down3 = self.esp(level2, encoder.down3, f'{name}down3', keep=True,
                         joins=(norm3.part(0, width3), level3, 0))
        self.stage(down3, encoder.stage3, f'{name}stage3',
                   (norm3.part(width3, 2 * width3), level3, width3))
        return stem, level1, level2, level3

    def esp_size(self, module: ESP, source: int) -> tuple[int, int]:
        """Return the height and width of ``module``'s output for ``source``."""
        _, height, width = self.plan.shape(source)
        return (_output_size(height, module.reduce, 0), _output_size(width, module.reduce, 1))


def build_plan(network: nn.Module, batch: int, height: int, width: int, *, threads: int,
               mixed: bool) -> Plan:
    """
    Return the plan of a folded fp32 ESPNet or ESPNet-C for N x 3 x H x W images.

    Each run reads ``plan.image`` (N x 3 x H x W) and writes ``plan.output``: ESPNet's
    classifier input (N x C x H/2 x W/2), or ESPNet-C's logits (N x C x H/8 x W/8), both
    float32 channels-last tensors.
    """
    reason = plan_unsupported(network)
    library = _LIBRARY.get()
    if reason or library is None:
        raise PlanError(reason or _LIBRARY.reason)
    tolerant = set(network.bf16_tolerant_convolutions()) if mixed else set()
    plan = Plan(library, batch, threads)
    builder = _Builder(plan, tolerant)
    source, plan.image = plan.tensor(IMAGE_CHANNELS, height, width)
    if not isinstance(network, ESPNet):
        _, _, _, level3 = builder.encoder(source, network, '')
        _, height3, width3 = plan.shape(level3)
        target, plan.output = plan.tensor(network.classifier.out_channels, height3, width3)
        plan.conv(level3, network.classifier, target=target)
        return plan
    encoder = network.encoder
    stem, level1, level2, level3 = builder.encoder(source, encoder, 'encoder.')
    # The decoder's batch norm of the 1/8 logits is folded into the classifier before it.
    logits = plan.conv(level3, folded(encoder.classifier, network.level3_bn))
    up3 = plan.upsample(logits, network.level3_up)
    projected = plan.conv(level2, network.level2_proj)
    classes, height2, width2 = plan.shape(projected)
    merge_norm = _norm(network.level2_merge_norm)
    merge_input = plan.buffer(2 * classes, height2, width2)
    plan.affine(projected, merge_input, 0, merge_norm.part(0, classes))
    plan.affine(up3, merge_input, classes, merge_norm.part(classes, 2 * classes))
    merged = builder.esp(merge_input, network.level2_merge, 'level2_merge', keep=True)
    up2 = plan.upsample(merged, network.level2_up.conv,
                        slopes=_slopes(network.level2_up.act, classes))
    skip = stem if network.skip_stem else level1
    skip_channels, height1, width1 = plan.shape(skip)
    last_merge = network.level1_merge
    concat = plan.buffer(classes + skip_channels, height1, width1,
                         bf16='level1_merge.conv' in tolerant)
    plan.affine(up2, concat, 0, Affine.identity(classes))
    plan.affine(skip, concat, classes, Affine.identity(skip_channels))
    target, plan.output = plan.tensor(classes, height1, width1)
    plan.conv(concat, last_merge.conv, slopes=_slopes(last_merge.act, classes), target=target)
    return plan


class PlanNetwork(nn.Module):
    """
    ESPNet or ESPNet-C run by oneDNN plans, one per input shape and thread count.

    Looks like the network to the heads (:mod:`espnet_ros.runtime.head`): ESPNet's
    ``classifier_input`` comes from the plan and its ``classifier`` is the network's own, so
    the labels come from the fused head; ESPNet-C's logits come from the plan.
    """

    def __init__(self, network: nn.Module, *, mixed: bool) -> None:
        """Fold a private fp32 copy of ``network``; raise PlanError if no plan can run it."""
        super().__init__()
        reason = plan_unsupported(network) or load_plan_library()
        if reason:
            raise PlanError(reason)
        self.network = folded_fp32_copy(network)
        self.mixed = mixed
        self.decoder = isinstance(self.network, ESPNet)
        if self.decoder:
            self.classifier = self.network.classifier
        self._plans: dict[tuple[int, ...], Plan] = {}  # by batch, height, width, threads
        self._lock = threading.Lock()

    def plans(self) -> list[Plan]:
        """Return the plans built so far."""
        return list(self._plans.values())

    def _plan(self, batch: int, height: int, width: int) -> Plan:
        key = (batch, height, width, torch.get_num_threads())
        if key not in self._plans:
            self._plans[key] = build_plan(self.network, batch, height, width, threads=key[-1],
                                          mixed=self.mixed)
        return self._plans[key]

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        """Return the plan's output for a CPU float batch (a new tensor)."""
        images, channels, height, width = batch.shape
        multiple = FAMILIES['espnet'].size_multiple
        if channels != IMAGE_CHANNELS or (self.decoder and (height % multiple
                                                            or width % multiple)):
            raise ValueError(f'the plan takes N x {IMAGE_CHANNELS} x H x W images (H, W '
                             f'multiples of {multiple} for ESPNet), not {tuple(batch.shape)}')
        with self._lock:
            with torch.inference_mode():
                plan = self._plan(images, height, width)
                plan.image.copy_(batch)
                plan.run()
            # Outside inference mode the copy is a normal tensor, whatever the caller's mode.
            return plan.output.clone(memory_format=torch.channels_last)

    def step_times(self, batch: torch.Tensor, runs: int) -> list[tuple[str, float]]:
        """Return each step of ``batch``'s plan and its mean milliseconds over ``runs``."""
        images, _, height, width = batch.shape
        # The plan's tensors may be inference tensors: written in inference mode only.
        with self._lock, torch.inference_mode():
            plan = self._plan(images, height, width)
            plan.image.copy_(batch)
            totals = np.zeros(len(plan.steps))
            for _ in range(runs):
                plan.run_timed(totals)
        return [(step, total / runs) for step, total in zip(plan.steps, totals)]

    def classifier_input(self, batch: torch.Tensor) -> torch.Tensor:
        """Return ESPNet's N x C x H/2 x W/2 map that its last layer upsamples."""
        return self._run(batch)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Return the network's logits (ESPNet: full size; ESPNet-C: 1/8)."""
        if self.decoder:
            return self.classifier(self._run(batch))
        return self._run(batch)
