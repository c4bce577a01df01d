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
The labels of ESPNet's last layer by phase: the class planes, and one fused C kernel.

ESPNet ends in a 2x2 stride-2 transposed convolution: input pixel (i, j) gives output pixels
(2i + a, 2j + b), one per phase (a, b), each a C x C_in product of the pixel's features.
:func:`phase_planes` computes every phase's classes as planes along the pixels with one
matrix product (what a CPU's arg-max reads as vectors), and :func:`interleave_phases` puts
the phases' label maps back on the output grid.

The operators ``espnet_ros::phase_labels`` and ``espnet_ros::phase_labels_and_confidence``
go further on the CPU: the product, the arg-max and (for the second) the winner's softmax
probability in one pass of a C kernel (``phase_labels.c``) that keeps each block of pixels'
scores in vector registers, so the class scores of the matrix product are never written out
and read back (what that saves: docs/performance.md, sixth pass). As operators, the compiled
graphs (torch.compile and the cache's AOTInductor packages) call them as one step.

The kernel is compiled on first use, in the process, with the machine's C compiler
(``$CC``, else ``cc``, ``gcc`` or ``clang``) for the machine's own vector instructions, as
inductor compiles its kernels: a kernel built once for every CPU would use none of them. It is
built in a new private temporary folder, loaded, and the folder removed, so nothing on disk
is trusted across processes. Where no compiler works, or for inputs it does not take, the
operator computes the same labels with :func:`phase_planes` and an arg-max, and
:func:`kernel_unavailable` says why.
"""

import ctypes
from importlib import resources
from pathlib import Path
import subprocess
import tempfile
from typing import Optional

import torch

from espnet_ros.runtime.native import BuiltOnce, find_compiler
from espnet_ros.runtime.postprocess import class_labels, confidence

# A 2x2 stride-2 transposed convolution writes each input pixel to a 2x2 block of outputs:
# one output phase per kernel position.
PHASES = 2
KERNEL_SOURCE = 'phase_labels.c'
KERNEL_SYMBOL = 'espnet_phase_labels'
# What the kernel takes (phase_labels.c's MAX_CHANNELS and MAX_CLASSES).
MAX_KERNEL_CHANNELS = 256
MAX_KERNEL_CLASSES = 256
COMPILERS = ('cc', 'gcc', 'clang')
# Tried in order: the machine's vector instructions and OpenMP threads, then without each.
COMPILER_FLAG_SETS = (('-march=native', '-fopenmp'), ('-fopenmp',), ())
COMPILE_TIMEOUT_S = 120
# Of each failed compile's last line of errors, in the reason.
MAX_ERROR_CHARS = 200


def phase_planes(features: torch.Tensor, weight: torch.Tensor,
                 bias: Optional[torch.Tensor]) -> torch.Tensor:
    """
    Return a 2x2 stride-2 transposed convolution's output as (N * 4) x C x h x w class planes.

    ``features``: N x C_in x h x w; ``weight``: C_in x C x 2 x 2; ``bias``: C or None. Output
    pixel (2i + a, 2j + b) is phase (a, b) of input pixel (i, j). One matrix product writes
    every phase's classes as planes along the pixels, which the arg-max and softmax then read
    as vectors; the transposed convolution's own output puts the classes of a pixel together
    (channels-last), and an arg-max over those runs scalar (docs/performance.md).
    """
    batch, channels, height, width = features.shape
    rows = weight.permute(2, 3, 1, 0).reshape(-1, channels)  # (a, b, class) x C_in
    pixels = features.to(weight.dtype).permute(0, 2, 3, 1).reshape(batch, -1, channels)
    # One product per image: torch.matmul would fold the batch into the pixels and compute
    # the transposed product, which puts the classes of a pixel together again.
    planes = torch.stack([torch.mm(rows, image.t()) for image in pixels])  # N x 4C x h*w
    if bias is not None:
        planes = planes + bias.repeat(PHASES * PHASES)[:, None]
    return planes.reshape(batch * PHASES * PHASES, -1, height, width)


def interleave_phases(per_phase: torch.Tensor, batch: int) -> torch.Tensor:
    """Return (N * 4) x h x w phase maps as N x 2h x 2w: phase (a, b) at (2i + a, 2j + b)."""
    _, height, width = per_phase.shape
    grid = per_phase.reshape(batch, PHASES, PHASES, height, width).permute(0, 3, 1, 4, 2)
    return grid.reshape(batch, PHASES * height, PHASES * width)


def planes_labels(features: torch.Tensor, weight: torch.Tensor,
                  bias: Optional[torch.Tensor]) -> torch.Tensor:
    """Return N x 2h x 2w uint8 labels of the transposed convolution, by class planes."""
    return interleave_phases(class_labels(phase_planes(features, weight, bias)),
                             features.shape[0])


def planes_labels_and_confidence(features: torch.Tensor, weight: torch.Tensor,
                                 bias: Optional[torch.Tensor]
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the labels and float32 confidence (N x 2h x 2w each), by class planes."""
    planes, batch = phase_planes(features, weight, bias), features.shape[0]
    return (interleave_phases(class_labels(planes), batch),
            interleave_phases(confidence(planes), batch))


def _build() -> tuple[Optional[ctypes._CFuncPtr], Optional[str]]:
    """Compile and load the kernel; return its function, or None and the reason."""
    compiler, missing = find_compiler('CC', COMPILERS)
    if compiler is None:
        return None, missing
    source = resources.files(__package__).joinpath(KERNEL_SOURCE).read_text()
    errors = []
    with tempfile.TemporaryDirectory(prefix='espnet_ros-kernel-') as folder:  # 0700
        source_path = Path(folder) / KERNEL_SOURCE
        source_path.write_text(source)
        library = Path(folder) / 'phase_labels.so'
        for flags in COMPILER_FLAG_SETS:
            command = [compiler, '-O3', '-std=gnu11', '-shared', '-fPIC', *flags,
                       str(source_path), '-o', str(library)]
            try:
                result = subprocess.run(command, capture_output=True, text=True,
                                        timeout=COMPILE_TIMEOUT_S, check=False)
            except (OSError, subprocess.TimeoutExpired) as error:
                errors.append(f'{" ".join(flags) or "no flags"}: {error}')
                continue
            if result.returncode == 0:
                # Loaded while the folder exists; the mapping outlives the file.
                function = getattr(ctypes.CDLL(str(library)), KERNEL_SYMBOL)
                function.restype = ctypes.c_int
                function.argtypes = ([ctypes.c_void_p] * 3 + [ctypes.c_int64] * 5
                                     + [ctypes.c_int32] + [ctypes.c_void_p] * 2)
                return function, None
            last_line = (result.stderr.strip().splitlines() or ['no message'])[-1]
            errors.append(f'{" ".join(flags) or "no flags"}: {last_line[:MAX_ERROR_CHARS]}')
    return None, f'the C kernel did not compile with {compiler} (' + '; '.join(errors) + ')'


_KERNEL: BuiltOnce[ctypes._CFuncPtr] = BuiltOnce(_build)


def load_kernel() -> Optional[str]:
    """Build the kernel if not yet tried; return why it cannot run here, or None if it can."""
    _KERNEL.get()
    return _KERNEL.reason


def kernel_unavailable() -> Optional[str]:
    """
    Return why the kernel could not be built in this process, or None.

    None also when nothing has needed it yet (a network without ESPNet's last layer): this
    never starts a compiler.
    """
    return _KERNEL.reason


def _kernel_takes(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> bool:
    """Return True if the C kernel computes these inputs (else the planes do)."""
    tensors = (features, weight, bias)
    return (all(tensor.device.type == 'cpu' and tensor.dtype == torch.float32
                for tensor in tensors)
            and features.dim() == 4 and weight.dim() == 4
            and weight.shape[0] == features.shape[1]
            and tuple(weight.shape[2:]) == (PHASES, PHASES)
            and tuple(bias.shape) == (weight.shape[1],)
            and 0 < features.shape[1] <= MAX_KERNEL_CHANNELS
            and 0 < weight.shape[1] <= MAX_KERNEL_CLASSES
            and features.numel() > 0)


def _run_kernel(features: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                with_confidence: bool) -> Optional[tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """Return the kernel's labels (and confidence), or None where the planes must do it."""
    bias = weight.new_zeros(weight.shape[1:2]) if bias is None else bias
    function = _KERNEL.get() if _kernel_takes(features, weight, bias) else None
    if function is None:
        return None
    images, channels, height, width = features.shape
    pixels = features.permute(0, 2, 3, 1).contiguous()  # a view when channels-last
    weight, bias = weight.contiguous(), bias.contiguous()
    shape = (images, PHASES * height, PHASES * width)
    labels = torch.empty(shape, dtype=torch.uint8)
    found = torch.empty(shape, dtype=torch.float32) if with_confidence else None
    status = function(pixels.data_ptr(), weight.data_ptr(), bias.data_ptr(), images, height,
                      width, channels, weight.shape[1], torch.get_num_threads(),
                      labels.data_ptr(), None if found is None else found.data_ptr())
    # Not 0: sizes that _kernel_takes let through and the kernel refuses.
    return (labels, found) if status == 0 else None


@torch.library.custom_op('espnet_ros::phase_labels', mutates_args=())
def phase_labels(features: torch.Tensor, weight: torch.Tensor,
                 bias: Optional[torch.Tensor]) -> torch.Tensor:
    """
    Return N x 2h x 2w uint8 labels of a 2x2 stride-2 transposed convolution's output.

    ``features``: N x C_in x h x w; ``weight``: C_in x C x 2 x 2; ``bias``: C or None. The
    label of a pixel is its first largest class, as ``argmax`` gives; the sums run in another
    order than the matrix product's, so a near-tie may go the other way.
    """
    found = _run_kernel(features, weight, bias, with_confidence=False)
    return planes_labels(features, weight, bias) if found is None else found[0]


@phase_labels.register_fake
def _phase_labels_shape(features: torch.Tensor, weight: torch.Tensor,
                        bias: Optional[torch.Tensor]) -> torch.Tensor:
    """Return an empty tensor of the labels' shape, for tracing and export."""
    images, _, height, width = features.shape
    return features.new_empty((images, PHASES * height, PHASES * width), dtype=torch.uint8)


@torch.library.custom_op('espnet_ros::phase_labels_and_confidence', mutates_args=())
def phase_labels_and_confidence(features: torch.Tensor, weight: torch.Tensor,
                                bias: Optional[torch.Tensor]
                                ) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Return :func:`phase_labels` and each pixel's float32 confidence, N x 2h x 2w each.

    The confidence is the winning class's softmax probability over the classes, as
    :func:`~espnet_ros.runtime.postprocess.confidence` computes it from the logits.
    """
    found = _run_kernel(features, weight, bias, with_confidence=True)
    return planes_labels_and_confidence(features, weight, bias) if found is None else found


@phase_labels_and_confidence.register_fake
def _phase_labels_and_confidence_shape(features: torch.Tensor, weight: torch.Tensor,
                                       bias: Optional[torch.Tensor]
                                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Return empty tensors of the labels' and confidence's shapes, for tracing and export."""
    images, _, height, width = features.shape
    shape = (images, PHASES * height, PHASES * width)
    return (features.new_empty(shape, dtype=torch.uint8),
            features.new_empty(shape, dtype=torch.float32))
