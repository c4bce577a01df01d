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
Subnormal weights: find them and set them to zero.

The official ESPNet checkpoints hold tens of thousands of subnormal floats (nonzero, smaller
in magnitude than the dtype's smallest normal number). Intel cores take a micro-code assist on
every subnormal operand, which made ESPNet 3-11x slower there (AMD and ARM pay far less).
A subnormal weight contributes less than 1e-38 to an activation, so zeroing it changes the
outputs below float rounding; OpenVINO and OpenCV's DNN module do the same when they load a
model. Batch-norm folding and precision casts can create new ones, so every step that writes
weights flushes again.
"""

import itertools
from typing import Iterator

import torch
from torch import nn


def _float_tensors(module: nn.Module) -> Iterator[torch.Tensor]:
    """Yield the floating-point parameters and buffers of ``module``."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.is_floating_point():
            yield tensor


# Per float dtype: the integer type of its width, its exponent bits and its fraction bits.
# A subnormal has an all-zero exponent and a nonzero fraction.
_FIELDS = {torch.float32: (torch.int32, 0x7F800000, 0x007FFFFF),
           torch.float64: (torch.int64, 0x7FF0000000000000, 0x000FFFFFFFFFFFFF),
           torch.float16: (torch.int16, 0x7C00, 0x03FF),
           torch.bfloat16: (torch.int16, 0x7F80, 0x007F)}


def _subnormal_mask(tensor: torch.Tensor) -> torch.Tensor:
    """
    Return where ``tensor`` is nonzero and below its dtype's smallest normal magnitude.

    Read from the bits, not compared as floats: in a thread with denormals-are-zero set
    (:func:`espnet_ros.runtime.process.flush_denormals`) a subnormal compares equal to zero.
    """
    fields = _FIELDS.get(tensor.dtype)
    if fields is None:
        return (tensor != 0) & (tensor.abs() < torch.finfo(tensor.dtype).tiny)
    integer, exponent, fraction = fields
    bits = tensor.view(integer)
    return ((bits & exponent) == 0) & ((bits & fraction) != 0)


def count_subnormal_values(tensor: torch.Tensor) -> int:
    """Return how many values of the floating-point ``tensor`` are subnormal."""
    with torch.no_grad():
        return int(_subnormal_mask(tensor).sum())


def count_subnormals(module: nn.Module) -> int:
    """Return how many floating-point parameters and buffers of ``module`` are subnormal."""
    return sum(count_subnormal_values(tensor) for tensor in _float_tensors(module))


@torch.no_grad()
def flush_subnormals(module: nn.Module) -> int:
    """Set the subnormal parameters and buffers of ``module`` to zero in place; return how many."""
    flushed = 0
    for tensor in _float_tensors(module):
        mask = _subnormal_mask(tensor)
        count = int(mask.sum())
        if count:
            tensor.masked_fill_(mask, 0)
            flushed += count
    return flushed
