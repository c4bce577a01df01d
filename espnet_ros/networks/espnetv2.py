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
ESPNetv2 semantic segmentation (Mehta et al., CVPR 2019).

The EESPNet backbone stacks EESP units (grouped 1x1 reduce, K depth-wise dilated 3x3
branches fused hierarchically, grouped 1x1 expand). The decoder is the one the authors
shipped with their Cityscapes and PASCAL VOC checkpoints: efficient pyramid pooling at
1/16, 1/8, 1/4 and 1/2 resolution, merged bottom-up with gated projections of the encoder
features, then a bilinear resize to the input size.

The network runs on any input size; it equals the authors' network wherever theirs runs,
i.e. for H and W multiples of 16 (their decoder needs each level exactly twice the next).
"""

from collections.abc import Mapping
import math
import re

import torch
from torch import nn, Tensor
import torch.nn.functional as F

from espnet_ros.networks.layers import BNPReLU, ConvBN, ConvBNPReLU, ESPNETV2_BN_EPS, same_conv

# Channels at 1/2, 1/4, 1/8 and 1/16 resolution for each width scale s.
ESPNETV2_CHANNELS = {
    0.5: (16, 32, 64, 128),
    1.0: (32, 64, 128, 256),
    1.5: (32, 96, 192, 384),
    2.0: (32, 128, 256, 512),
}
_BRANCHES = 4
# Scales of the pyramid pooling branches, largest first (the checkpoints' branch order).
_PYRAMID_SCALES = (2.0, 1.5, 1.0, 0.5, 0.1)
# Pyramid branches never go below this many rows or columns.
_PYRAMID_MIN_SIZE = 5
_EPS = ESPNETV2_BN_EPS


def eesp_dilations(branches: int, max_receptive_field: int) -> list[int]:
    """
    Dilation rates of the depth-wise 3x3 branches of an EESP unit, ascending.

    Branch i would see a (3 + 2i) x (3 + 2i) field (dilation i + 1); branches beyond the
    limit fall back to dilation 1.
    """
    return sorted(i + 1 if 3 + 2 * i <= max_receptive_field else 1 for i in range(branches))


def hierarchical_feature_fusion(branch_outputs: list[Tensor]) -> Tensor:
    """
    HFF: concatenate the running sums of the branch outputs.

    K tensors N x n x H x W -> N x K*n x H x W, block k holding the sum of branches 0..k,
    which removes the gridding artefacts of the dilated branches.
    """
    fused = [branch_outputs[0]]
    for output in branch_outputs[1:]:
        fused.append(output + fused[-1])
    return torch.cat(fused, 1)


def resize_like(x: Tensor, reference: Tensor) -> Tensor:
    """Bilinear resize (corner-aligned) of N x C x h x w to the H x W of ``reference``."""
    return F.interpolate(x, size=reference.shape[-2:], mode='bilinear', align_corners=True)


def _adaptive_mean(x: Tensor, dim: int, size: int) -> Tensor:
    """
    Adaptive average pooling of ``x`` along ``dim`` (-2 or -1) to ``size`` elements.

    Output i averages inputs [floor(i L / size), ceil((i + 1) L / size)). The windows repeat
    every L / g inputs (g = gcd(L, size)), so one small matrix pools every period: cost linear
    in L, and ONNX gets MatMul and ReduceMean where it has no adaptive pooling to sizes that
    do not divide the input.
    """
    length = x.shape[dim]
    if length == size:
        return x
    period = math.gcd(length, size)
    inputs, outputs = length // period, size // period
    blocks = x.unflatten(dim, (period, inputs))
    if outputs == 1:
        return blocks.mean(dim)
    # Built on x's device from aranges: no host-to-device copy in the forward pass.
    rows = torch.arange(outputs, device=x.device).unsqueeze(1)
    cols = torch.arange(inputs, device=x.device)
    starts = rows * inputs // outputs
    ends = ((rows + 1) * inputs + outputs - 1) // outputs
    weights = ((cols >= starts) & (cols < ends)).to(x.dtype) / (ends - starts).to(x.dtype)
    if dim == -1:
        return torch.matmul(blocks, weights.t()).flatten(-2)
    return torch.matmul(weights, blocks).flatten(-3, -2)


def adaptive_avg_pool(x: Tensor, size: tuple[int, int]) -> Tensor:
    """
    ``F.adaptive_avg_pool2d`` that exports to ONNX for any output size (separable).

    N x C x H x W -> N x C x size[0] x size[1].
    """
    return _adaptive_mean(_adaptive_mean(x, -2, size[0]), -1, size[1])


class EESPTransform(nn.Module):
    """
    Reduce, split, transform and merge of an EESP unit, without residual or activation.

    N x Cin x H x W -> N x Cout x H/s x W/s (s = stride, sizes rounded up): grouped 1x1
    reduction to Cout/K channels, K depth-wise dilated 3x3 branches, HFF, batch norm and
    PReLU over the concatenation, grouped 1x1 expansion with batch norm.
    """

    def __init__(self, in_channels: int, out_channels: int, *, max_receptive_field: int,
                 stride: int = 1, branches: int = _BRANCHES) -> None:
        super().__init__()
        if out_channels % branches:
            raise ValueError(f'{out_channels} channels do not split into {branches} branches')
        width = out_channels // branches
        self.reduce = ConvBNPReLU(in_channels, width, 1, groups=branches, eps=_EPS)
        self.branches = nn.ModuleList(
            same_conv(width, width, 3, stride=stride, dilation=dilation, groups=width)
            for dilation in eesp_dilations(branches, max_receptive_field))
        self.post_concat = BNPReLU(out_channels, eps=_EPS)
        self.expand = ConvBN(out_channels, out_channels, 1, groups=branches, eps=_EPS)

    def forward(self, x: Tensor) -> Tensor:
        reduced = self.reduce(x)
        fused = hierarchical_feature_fusion([branch(reduced) for branch in self.branches])
        return self.expand(self.post_concat(fused))


class EESP(EESPTransform):
    """
    EESP unit with residual connection: N x C x H x W -> N x C x H x W.

    PReLU(x + EESPTransform(x)).
    """

    def __init__(self, channels: int, *, max_receptive_field: int,
                 branches: int = _BRANCHES) -> None:
        super().__init__(channels, channels, max_receptive_field=max_receptive_field,
                         branches=branches)
        self.act = nn.PReLU(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(x + super().forward(x))


class StridedEESP(nn.Module):
    """
    Down-sampling EESP unit with input reinforcement.

    Inputs: features N x Cin x H x W and the image average-pooled to the output size,
    N x 3 x H' x W' (H' = ceil(H / 2), W' = ceil(W / 2)). Output N x Cout x H' x W':
    PReLU(concat(avgpool3x3/2(x), EESPTransform_stride2(x) with Cout - Cin channels)
    + ConvBN1x1(ConvBNPReLU3x3(image))).
    """

    def __init__(self, in_channels: int, out_channels: int, *, max_receptive_field: int,
                 branches: int = _BRANCHES) -> None:
        super().__init__()
        self.eesp = EESPTransform(in_channels, out_channels - in_channels, stride=2,
                                  max_receptive_field=max_receptive_field, branches=branches)
        self.image_conv = ConvBNPReLU(3, 3, 3, eps=_EPS)
        self.image_proj = ConvBN(3, out_channels, 1, eps=_EPS)
        self.act = nn.PReLU(out_channels)

    def forward(self, x: Tensor, image: Tensor) -> Tensor:
        pooled = F.avg_pool2d(x, 3, stride=2, padding=1)
        merged = torch.cat((pooled, self.eesp(x)), 1)
        return self.act(merged + self.image_proj(self.image_conv(image)))


class EESPNet(nn.Module):
    """
    EESPNet backbone (levels 1-4 of the ImageNet network) at width scale s.

    N x 3 x H x W -> features at 1/2, 1/4, 1/8 and 1/16 resolution (sizes rounded up) with
    ``ESPNETV2_CHANNELS[scale]`` channels.
    """

    def __init__(self, *, scale: float) -> None:
        super().__init__()
        if scale not in ESPNETV2_CHANNELS:
            raise ValueError(f'scale must be one of {sorted(ESPNETV2_CHANNELS)}, not {scale}')
        c1, c2, c3, c4 = ESPNETV2_CHANNELS[scale]
        self.channels = (c1, c2, c3, c4)
        self.level1 = ConvBNPReLU(3, c1, 3, stride=2, eps=_EPS)
        self.level2 = StridedEESP(c1, c2, max_receptive_field=13)
        self.level3_down = StridedEESP(c2, c3, max_receptive_field=11)
        self.level3 = nn.Sequential(*(EESP(c3, max_receptive_field=9) for _ in range(3)))
        self.level4_down = StridedEESP(c3, c4, max_receptive_field=9)
        self.level4 = nn.Sequential(*(EESP(c4, max_receptive_field=7) for _ in range(7)))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        # The image pyramid is built once; each strided unit takes the level of its size.
        half = F.avg_pool2d(x, 3, stride=2, padding=1)
        quarter = F.avg_pool2d(half, 3, stride=2, padding=1)
        eighth = F.avg_pool2d(quarter, 3, stride=2, padding=1)
        sixteenth = F.avg_pool2d(eighth, 3, stride=2, padding=1)
        f1 = self.level1(x)
        f2 = self.level2(f1, quarter)
        f3 = self.level3(self.level3_down(f2, eighth))
        f4 = self.level4(self.level4_down(f3, sixteenth))
        return f1, f2, f3, f4


class EfficientPyramidPooling(nn.Module):
    """
    Efficient pyramid pooling (EPP): N x Cin x H x W -> N x Cout x H x W.

    A 1x1 ConvBNPReLU projects to P channels; five depth-wise 3x3 branches run on the
    projection resized to 2, 1.5, 1, 0.5 and 0.1 times its size (at least 5 x 5; bilinear
    up, adaptive average pooling down) and are resized back; batch norm and PReLU over the
    5P branch channels; a 3x3 ConvBNPReLU with P groups, each mixing one channel of every
    branch, back to P channels; a 1x1 expansion to Cout, a ConvBNPReLU or, for the final
    classifier, a plain convolution with bias.

    The branch outputs are interleaved channel by channel (channel 5c + b is channel c of
    branch b), the grouping the 3x3 merge needs, so no channel shuffle is copied.
    """

    def __init__(self, in_channels: int, proj_channels: int, out_channels: int, *,
                 classifier: bool = False) -> None:
        super().__init__()
        total = proj_channels * len(_PYRAMID_SCALES)
        self.project = ConvBNPReLU(in_channels, proj_channels, 1, eps=_EPS)
        self.branches = nn.ModuleList(
            same_conv(proj_channels, proj_channels, 3, groups=proj_channels)
            for _ in _PYRAMID_SCALES)
        self.post_concat = BNPReLU(total, eps=_EPS)
        self.merge = ConvBNPReLU(total, proj_channels, 3, groups=proj_channels, eps=_EPS)
        self.expand: nn.Module = (
            nn.Conv2d(proj_channels, out_channels, 1) if classifier
            else ConvBNPReLU(proj_channels, out_channels, 1, eps=_EPS))

    def forward(self, x: Tensor) -> Tensor:
        x = self.project(x)
        height, width = x.shape[-2:]
        outputs = []
        for scale, branch in zip(_PYRAMID_SCALES, self.branches):
            if scale == 1.0:
                outputs.append(branch(x))
                continue
            size = (max(math.ceil(height * scale), _PYRAMID_MIN_SIZE),
                    max(math.ceil(width * scale), _PYRAMID_MIN_SIZE))
            if scale > 1.0:
                resized = F.interpolate(x, size=size, mode='bilinear', align_corners=True)
                outputs.append(adaptive_avg_pool(branch(resized), (height, width)))
            else:
                outputs.append(resize_like(branch(adaptive_avg_pool(x, size)), x))
        interleaved = torch.stack(outputs, 2).flatten(1, 2)
        return self.expand(self.merge(self.post_concat(interleaved)))


class GatedProjection(nn.Module):
    """
    Projection of an encoder feature map for the decoder: N x Cin x H x W -> N x Cout x H x W.

    A grouped 3x3 ConvBNPReLU (gcd(Cin, Cout) groups) scaled per channel by a sigmoid gate
    computed by a 1x1 convolution from the global average of the input.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.gate = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.project = ConvBNPReLU(in_channels, out_channels, 3,
                                   groups=math.gcd(in_channels, out_channels), eps=_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return self.project(x) * torch.sigmoid(self.gate(x.mean((2, 3), keepdim=True)))


class ESPNetv2Segmentation(nn.Module):
    """
    ESPNetv2 segmentation network: N x 3 x H x W (normalised) -> N x C x H x W logits.

    EESPNet features at 1/16 go through an EPP; each step up resizes the decoder output to
    the next encoder level (1/8, 1/4, 1/2), adds that level's gated projection, applies
    batch norm and PReLU and another EPP (64, 48, 32, then C channels). The last EPP ends in
    the classifier; its output is resized bilinearly to the input size.
    """

    def __init__(self, *, num_classes: int, scale: float) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f'num_classes must be at least 2, not {num_classes}')
        self.encoder = EESPNet(scale=scale)
        c1, c2, c3, c4 = self.encoder.channels
        proj = min(num_classes // 2, 16)
        self.pyramid4 = EfficientPyramidPooling(c4, proj, 64)
        self.skip3 = GatedProjection(c3, 64)
        self.merge3 = BNPReLU(64, eps=_EPS)
        self.pyramid3 = EfficientPyramidPooling(64, proj, 48)
        self.skip2 = GatedProjection(c2, 48)
        self.merge2 = BNPReLU(48, eps=_EPS)
        self.pyramid2 = EfficientPyramidPooling(48, proj, 32)
        self.skip1 = GatedProjection(c1, 32)
        self.merge1 = BNPReLU(32, eps=_EPS)
        self.classifier = EfficientPyramidPooling(32, proj, num_classes, classifier=True)

    def forward(self, x: Tensor) -> Tensor:
        f1, f2, f3, f4 = self.encoder(x)
        y = self.pyramid4(f4)
        y = self.pyramid3(self.merge3(self.skip3(f3) + resize_like(y, f3)))
        y = self.pyramid2(self.merge2(self.skip2(f2) + resize_like(y, f2)))
        y = self.classifier(self.merge1(self.skip1(f1) + resize_like(y, f1)))
        return resize_like(y, x)


# Official (EdgeNets) module prefixes -> ours; only the first match is replaced.
_PREFIXES = (
    ('base_net.level2_0.', 'encoder.level2.'), ('base_net.level3_0.', 'encoder.level3_down.'),
    ('base_net.level4_0.', 'encoder.level4_down.'), ('base_net.', 'encoder.'),
    ('bu_dec_l1.', 'pyramid4.'), ('bu_dec_l2.', 'pyramid3.'), ('bu_dec_l3.', 'pyramid2.'),
    ('bu_dec_l4.', 'classifier.'), ('merge_enc_dec_l2.', 'skip3.'),
    ('merge_enc_dec_l3.', 'skip2.'), ('merge_enc_dec_l4.', 'skip1.'),
    ('bu_br_l2.', 'merge3.'), ('bu_br_l3.', 'merge2.'), ('bu_br_l4.', 'merge1.'),
)
# Official inner names -> ours, all applied in order (nn.Sequential indices last).
_RENAMES = (
    (r'\.proj_1x1\.', '.reduce.'),
    (r'\.spp_dw\.(\d+)\.conv\.', r'.branches.\1.'),
    (r'\.br_after_cat\.', '.post_concat.'),
    (r'\.conv_1x1_exp\.', '.expand.'),
    (r'\.module_act\.', '.act.'),
    (r'\.inp_reinf\.0\.', '.image_conv.'),
    (r'\.inp_reinf\.1\.', '.image_proj.'),
    (r'\.stages\.', '.branches.'),
    (r'\.(?:projection|expansion)_layer\.cbr\.', '.project.cbr.'),
    (r'\.merge_layer\.0\.br\.', '.post_concat.br.'),
    (r'\.merge_layer\.2\.cbr\.', '.merge.cbr.'),
    (r'^(pyramid\d)\.merge_layer\.3\.', r'\1.expand.conv.'),
    (r'^classifier\.merge_layer\.3\.', 'classifier.expand.'),
    (r'\.br\.br\.', '.expand.br.'),
    (r'\.wt_layer\.1\.', '.gate.'),
    (r'\.cbr\.0\.', '.conv.'),
    (r'\.(?:cbr\.1|br\.0)\.', '.bn.'),
    (r'\.(?:cbr\.2|br\.1)\.', '.act.'),
    (r'^(merge\d)\.0\.', r'\1.bn.'),
    (r'^(merge\d)\.1\.', r'\1.act.'),
)


def espnetv2_checkpoint_filter(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """
    Map an official EdgeNets ESPNetv2 segmentation state dict to our parameter names.

    Strips a DataParallel ``module.`` prefix and renames the keys; drops the final PReLU of
    the strided EESP branches, which the authors' network never applies; reorders the
    pyramid-pooling batch norm over the branch channels to our interleaved order. Keys
    already in our naming pass through unchanged.
    """
    filtered = {}
    for key, value in state_dict.items():
        key = key.removeprefix('module.')
        if re.search(r'level\d_0\.eesp\.module_act\.', key):
            continue
        if '.merge_layer.0.br.' in key and value.dim() == 1:
            value = value.reshape(len(_PYRAMID_SCALES), -1).t().flatten()
        for official, ours in _PREFIXES:
            if key.startswith(official):
                key = ours + key.removeprefix(official)
                break
        for pattern, replacement in _RENAMES:
            key = re.sub(pattern, replacement, key)
        filtered[key] = value
    return filtered
