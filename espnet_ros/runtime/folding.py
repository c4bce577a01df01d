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
Batch-norm folding: each eval-mode batch norm merged into the convolution before it.

Eval-mode batch norm is an affine map per channel, so folding it saves one pass over memory
per unit and leaves the outputs equal up to float rounding.
"""

import copy

import torch
from torch import nn

from espnet_ros.networks.layers import ConvBN, UpConvBNPReLU
from espnet_ros.networks.subnormals import flush_subnormals


def folded_fp32_copy(network: nn.Module) -> nn.Module:
    """Return a folded fp32 CPU copy of ``network`` in eval mode; ``network`` is untouched."""
    return fold_batch_norms(copy.deepcopy(network).eval().float().cpu())


@torch.no_grad()
def fold_batch_norms(network: nn.Module) -> nn.Module:
    """
    Fold every ConvBN and UpConvBNPReLU unit's batch norm into its convolution; return network.

    Eval-mode batch norm is y = (x - mean) / sqrt(var + eps) * gamma + beta, an affine map
    per channel, so it merges into the convolution's weight and bias exactly (up to float
    rounding). Done here for the transposed convolutions too, because inductor's own
    folding (with frozen weights) scales a transposed convolution's input channels instead
    of its outputs: ESPNet's labels came out 24% wrong.
    """
    for unit in network.modules():
        if isinstance(unit, (ConvBN, UpConvBNPReLU)) and isinstance(unit.bn, nn.BatchNorm2d):
            unit.conv, unit.bn = folded(unit.conv, unit.bn), nn.Identity()
    # A tiny batch-norm scale times a small weight can underflow into a new subnormal.
    flush_subnormals(network)
    return network


def batch_norm_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Return an eval-mode batch norm as per-channel (scale, shift): y = x * scale + shift."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


@torch.no_grad()
def folded(conv: nn.Module, bn: nn.BatchNorm2d) -> nn.Module:
    """Return a copy of ``conv`` (2-D, plain or transposed) with ``bn`` folded in."""
    # Weights are C_out x C_in/groups x kh x kw, transposed ones C_in x C_out/groups x kh x kw.
    output_axis = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
    if output_axis == 1 and conv.groups != 1:
        raise ValueError('folding into grouped transposed convolutions is not supported')
    scale, shift = batch_norm_affine(bn)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused = copy.deepcopy(conv)
    fused.weight = nn.Parameter(conv.weight * scale.view([-1 if axis == output_axis else 1
                                                          for axis in range(4)]))
    fused.bias = nn.Parameter(bias * scale + shift)
    return fused
