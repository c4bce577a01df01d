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
Mixed precision on the CPU: bf16 only in the convolutions a network names as tolerant of it.

Rounding every layer to bf16 (8 significant bits) changed more of ESPNet's labels against
fp32 than the 0.5% this package accepts. The dilated 3x3 branches, where most of the
arithmetic is, stay under it in bf16; the ESP modules' 1x1 reductions or the first
convolution do not (measured one by one on CamVid val; figures in docs/performance.md). So a
network lists its tolerant convolutions (``bf16_tolerant_convolutions()``) and everything
else stays fp32. It pays only when compiled: inductor fuses each rounding into the kernel
before it, while eager PyTorch spends a pass over memory on each.
"""

import torch
from torch import nn, Tensor

from espnet_ros.compat import onednn_has_bf16
from espnet_ros.networks.subnormals import flush_subnormals


def cpu_bf16_supported() -> bool:
    """Return True if oneDNN has native bf16 kernels on this CPU (AVX512-BF16 or AMX)."""
    return onednn_has_bf16()


def supports_mixed_precision(network: nn.Module) -> bool:
    """Return True if ``network`` names the convolutions that may run in bf16."""
    return callable(getattr(network, 'bf16_tolerant_convolutions', None))


class BFloat16Conv(nn.Module):
    """
    A convolution computed in bf16 between float32 tensors.

    The input and the weights are rounded to bf16, oneDNN accumulates in fp32 and the result
    comes back as float32. N x C_in x H x W -> N x C_out x H' x W', like the convolution.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        """Wrap ``conv``, converting its weights to bf16 (memory format kept)."""
        super().__init__()
        self.conv = conv.to(torch.bfloat16)
        # Rounding to bf16 keeps fp32's exponent range, yet a weight near it can round down.
        flush_subnormals(self.conv)

    def forward(self, x: Tensor) -> Tensor:
        """Return the convolution of ``x`` in ``x``'s dtype."""
        return self.conv(x.to(torch.bfloat16)).to(x.dtype)


def apply_mixed_precision(network: nn.Module) -> nn.Module:
    """Wrap the network's bf16-tolerant convolutions in :class:`BFloat16Conv`, in place."""
    if not supports_mixed_precision(network):
        raise ValueError(f'{type(network).__name__} does not name bf16-tolerant convolutions')
    for name in network.bf16_tolerant_convolutions():
        parent_name, _, attribute = name.rpartition('.')
        parent = network.get_submodule(parent_name)
        conv = getattr(parent, attribute)
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f'{name} is a {type(conv).__name__}, not a Conv2d')
        setattr(parent, attribute, BFloat16Conv(conv))
    return network
