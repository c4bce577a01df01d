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
Convolution, normalisation and activation units shared by ESPNet and ESPNetv2.

Each unit keeps its parts under the attribute names ``conv``, ``bn`` and ``act`` so
that :func:`espnet_ros.runtime.runners.fold_batch_norms` can find every convolution (transposed
ones too) that is followed by a batch norm and fold the two together for inference.
"""

from typing import Optional, Sequence

import torch
from torch import nn, Tensor
import torch.nn.functional as F

# ESPNet (2018) trained its batch norms with eps=1e-3; ESPNetv2 kept PyTorch's 1e-5.
ESPNET_BN_EPS = 1e-3
ESPNETV2_BN_EPS = 1e-5


def same_conv(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
              dilation: int = 1, groups: int = 1) -> nn.Conv2d:
    """Bias-free convolution padded so that the output is ``ceil(input / stride)`` in size."""
    padding = (kernel_size - 1) // 2 * dilation
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                     dilation=dilation, groups=groups, bias=False)


class BNPReLU(nn.Module):
    """Batch norm then PReLU: N x C x H x W -> N x C x H x W."""

    def __init__(self, channels: int, *, eps: float = ESPNET_BN_EPS) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=eps)
        self.act = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(x))

    def of_concatenation(self, parts: Sequence[Tensor]) -> Tensor:
        """
        Return ``self(torch.cat(parts, 1))``: in eval mode each part normalised on its own.

        Batch norm and PReLU act per channel, so the result is the same to the bit, and a
        compiler can write each part's result straight into its slice of the output instead
        of building the concatenation first (inductor built ESPNet's level-1 concatenation in
        NCHW and transposed it twice; docs/performance.md). Training concatenates first, so
        that batch statistics and their running averages are kept as the module keeps them.
        """
        if len(parts) == 1:
            return self(parts[0])
        if self.training:
            return self(torch.cat(list(parts), 1))
        bn, slope, shared = self.bn, self.act.weight, self.act.num_parameters == 1
        normalised, start = [], 0
        for part in parts:
            end = start + part.shape[1]
            channels = slice(start, end)
            scaled = F.batch_norm(part, bn.running_mean[channels], bn.running_var[channels],
                                  bn.weight[channels], bn.bias[channels], False, 0.0, bn.eps)
            normalised.append(F.prelu(scaled, slope if shared else slope[channels]))
            start = end
        return torch.cat(normalised, 1)


class ConvBN(nn.Module):
    """Same-padded convolution then batch norm: N x Cin x H x W -> N x Cout x H/s x W/s."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, dilation: int = 1, groups: int = 1,
                 eps: float = ESPNET_BN_EPS) -> None:
        super().__init__()
        self.conv = same_conv(in_channels, out_channels, kernel_size, stride=stride,
                              dilation=dilation, groups=groups)
        self.bn = nn.BatchNorm2d(out_channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))


class ConvBNPReLU(ConvBN):
    """Same-padded convolution, batch norm, PReLU: N x Cin x H x W -> N x Cout x H/s x W/s."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, dilation: int = 1, groups: int = 1,
                 eps: float = ESPNET_BN_EPS) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         dilation=dilation, groups=groups, eps=eps)
        self.act = nn.PReLU(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


def upsampling_conv(channels: int, out_channels: Optional[int] = None) -> nn.ConvTranspose2d:
    """Bias-free 2x2 stride-2 transposed convolution: N x C x H x W -> N x C' x 2H x 2W."""
    return nn.ConvTranspose2d(channels, out_channels or channels, 2, stride=2, bias=False)


class UpConvBNPReLU(nn.Module):
    """:func:`upsampling_conv`, batch norm, PReLU: N x C x H x W -> N x C x 2H x 2W."""

    def __init__(self, channels: int, *, eps: float = ESPNET_BN_EPS) -> None:
        super().__init__()
        self.conv = upsampling_conv(channels)
        self.bn = nn.BatchNorm2d(channels, eps=eps)
        self.act = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))
