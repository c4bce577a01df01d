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
ESPNet (Mehta et al., ECCV 2018): semantic segmentation from efficient spatial pyramids.

The encoder learns features at three levels (1/2, 1/4, 1/8 of the input) with ESP modules.
The paper's ablation builds it up in steps: ESPNet-A stacks ESP modules, ESPNet-B adds
long-range shortcut concatenations, ESPNet-C adds input reinforcement (the image, average
pooled, concatenated in). ESPNet puts a light reduce-upsample-merge decoder on ESPNet-C.
:func:`espnet_checkpoint_filter` maps the authors' checkpoint keys to the names used here.
"""

import re
from typing import Any, Callable, Literal, Mapping, NamedTuple, Optional, Sequence, Union

import torch
from torch import nn, Tensor

from espnet_ros.networks.layers import (BNPReLU, ConvBNPReLU, ESPNET_BN_EPS, same_conv,
                                        UpConvBNPReLU, upsampling_conv)

# Widths the authors fixed for every ESPNet at levels 1, 2 and 3 (1/2, 1/4, 1/8 resolution).
LEVEL_CHANNELS = (16, 64, 128)
IMAGE_CHANNELS = 3
ESP_BRANCHES = 5

DecoderSkip = Literal['stem', 'reinforced']


def esp_dilations(branches: int) -> tuple[int, ...]:
    """Return the dilation rates ``2**(k-1)`` of the branches ``k = 1..branches`` of an ESP."""
    return tuple(2 ** k for k in range(branches))


ESP_DILATIONS = esp_dilations(ESP_BRANCHES)


def hierarchical_fusion(branches: Sequence[Tensor]) -> Tensor:
    """
    Hierarchical feature fusion (HFF) of ESP branch outputs, merged by one concatenation.

    The first (dilation 1) output passes unchanged; the k-th merged map, k >= 2, is the sum
    of outputs 2..k, so each wide-dilation branch is filled in by the denser samples of the
    narrower ones, which removes the gridding artefacts of large dilation rates.

    ``branches``: K >= 2 tensors N x n_k x H x W with n_2 = ... = n_K.
    Returns N x (n_1 + ... + n_K) x H x W.
    """
    total = branches[1]
    fused = [branches[0], total]
    for branch in branches[2:]:
        total = total + branch
        fused.append(total)
    return torch.cat(fused, 1)


class ESP(nn.Module):
    """
    Efficient spatial pyramid module: reduce, split, transform, merge.

    A convolution reduces N_in to d = N_out // K channels (1x1; 3x3 when strided), K parallel
    3x3 convolutions with the given dilation rates (``2**(k-1)`` by default) transform the
    result, :func:`hierarchical_fusion` merges them back to N_out channels, the input is added
    when ``residual`` and batch norm + PReLU finish. Like the authors' modules, the first
    branch takes the channels the split leaves over: n_1 = N_out - (K - 1) d, so N_out need
    not be a multiple of K.

    N x N_in x H x W -> N x N_out x ceil(H / stride) x ceil(W / stride).
    """

    def __init__(self, in_channels: int, out_channels: int, *,
                 dilations: Sequence[int] = ESP_DILATIONS,
                 residual: bool = True, stride: int = 1) -> None:
        """Build an ESP with K = ``len(dilations)`` branches; raise ValueError if impossible."""
        super().__init__()
        if len(dilations) < 2 or out_channels < len(dilations):
            raise ValueError(f'an ESP needs at least 2 branches and one channel each, got '
                             f'{len(dilations)} branches for {out_channels} channels')
        if residual and (stride != 1 or in_channels != out_channels):
            raise ValueError('a residual ESP keeps its input shape: stride 1, N_in == N_out')
        width = out_channels // len(dilations)
        first = out_channels - (len(dilations) - 1) * width
        self.residual = residual
        self.reduce = same_conv(in_channels, width, 1 if stride == 1 else 3, stride=stride)
        self.branches = nn.ModuleList(
            same_conv(width, first if k == 0 else width, 3, dilation=rate)
            for k, rate in enumerate(dilations))
        self.norm = BNPReLU(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """Return the module output for ``x`` (shapes in the class docstring)."""
        reduced = self.reduce(x)
        merged = hierarchical_fusion([branch(reduced) for branch in self.branches])
        if self.residual:
            merged = merged + x
        return self.norm(merged)


class StridedESP(ESP):
    """
    Downsampling ESP: a 3x3 stride-2 reduction and no residual connection.

    N x N_in x H x W -> N x N_out x ceil(H / 2) x ceil(W / 2).
    """

    def __init__(self, in_channels: int, out_channels: int, *,
                 dilations: Sequence[int] = ESP_DILATIONS) -> None:
        """Build a strided ESP with K = ``len(dilations)`` branches."""
        super().__init__(in_channels, out_channels, dilations=dilations, residual=False,
                         stride=2)


class InputReinforcement(nn.Module):
    """
    The image at 1/2, 1/4, ... size, to be concatenated into the encoder's feature maps.

    Each level is a 3x3 stride-2 average pooling (padding 1, zeros counted) of the one before,
    which makes it exactly as large as the stride-2 feature maps it joins.

    N x 3 x H x W -> ``levels`` tensors, the k-th N x 3 x ceil(H / 2**k) x ceil(W / 2**k).
    """

    def __init__(self, levels: int) -> None:
        """Build the pooling for ``levels`` halvings."""
        super().__init__()
        self.levels = levels
        self.pool = nn.AvgPool2d(3, stride=2, padding=1)

    def forward(self, image: Tensor) -> list[Tensor]:
        """Return the downsampled images, largest first."""
        pyramid = []
        for _ in range(self.levels):
            image = self.pool(image)
            pyramid.append(image)
        return pyramid


class EncoderFeatures(NamedTuple):
    """The encoder maps the ESPNet decoder reuses (sizes for an N x 3 x H x W input)."""

    stem: Tensor  # N x 16 x H/2 x W/2: the first convolution's output
    level1: Tensor  # N x (16 or 19) x H/2 x W/2: the stem with the 1/2 image concatenated in
    level2: Tensor  # N x (64, 128 or 131) x H/4 x W/4: the input to the second strided ESP
    logits: Tensor  # N x C x H/8 x W/8


def _normalised_concat(norm: nn.Module, parts: list[Tensor]) -> Tensor:
    """Return ``norm`` of the channel concatenation of ``parts`` (Identity: a single part)."""
    return norm.of_concatenation(parts) if isinstance(norm, BNPReLU) else norm(parts[0])


def _norm_after_concat(own: int, total: int) -> nn.Module:
    return BNPReLU(total) if total != own else nn.Identity()


class ESPEncoder(nn.Module):
    """
    ESPNet-A, -B or -C of the paper's ablation: N x 3 x H x W -> N x C x H/8 x W/8.

    A 3x3 stride-2 convolution, then at 1/4 and 1/8 resolution a strided ESP followed by
    ``p`` (resp. ``q``) ESP modules, then a 1x1 classifier. ``shortcuts`` concatenates each
    level's strided-ESP output to its last ESP output (ESPNet-B); ``input_reinforcement``
    also concatenates the average-pooled image at 1/2 and 1/4 (ESPNet-C). Every
    concatenation is followed by batch norm + PReLU. Output sizes are ceil(H / 8) x
    ceil(W / 8).
    """

    def __init__(self, *, num_classes: int, p: int = 2, q: int = 3, shortcuts: bool = True,
                 input_reinforcement: bool = True) -> None:
        """Build the encoder with ``p`` ESP modules at 1/4 and ``q`` at 1/8 resolution."""
        super().__init__()
        level1, level2, level3 = LEVEL_CHANNELS
        image = IMAGE_CHANNELS if input_reinforcement else 0
        self.shortcuts = shortcuts
        self.stem = ConvBNPReLU(IMAGE_CHANNELS, level1, 3, stride=2)
        self.reinforcement = InputReinforcement(2) if input_reinforcement else None
        self.level1_channels = level1 + image
        self.level1_norm = _norm_after_concat(level1, self.level1_channels)
        self.down2 = StridedESP(self.level1_channels, level2)
        self.stage2 = nn.Sequential(*(ESP(level2, level2) for _ in range(p)))
        self.level2_channels = level2 * (2 if shortcuts else 1) + image
        self.level2_norm = _norm_after_concat(level2, self.level2_channels)
        self.down3 = StridedESP(self.level2_channels, level3)
        self.stage3 = nn.Sequential(*(ESP(level3, level3) for _ in range(q)))
        level3_out = level3 * (2 if shortcuts else 1)
        self.level3_norm = _norm_after_concat(level3, level3_out)
        self.classifier = same_conv(level3_out, num_classes, 1)

    def features(self, image: Tensor) -> EncoderFeatures:
        """Return the intermediate maps and the 1/8 logits for an N x 3 x H x W image."""
        stem = self.stem(image)
        level1_parts, level2_tail = [stem], []
        if self.reinforcement is not None:
            half, quarter = self.reinforcement(image)
            level1_parts.append(half)
            level2_tail.append(quarter)
        level1 = _normalised_concat(self.level1_norm, level1_parts)
        down2 = self.down2(level1)
        level2_parts = [self.stage2(down2)] + ([down2] if self.shortcuts else []) + level2_tail
        level2 = _normalised_concat(self.level2_norm, level2_parts)
        down3 = self.down3(level2)
        # The authors' concatenation orders (shortcut last at level 2, first at level 3), so
        # that the channels meet their checkpoints' batch norms.
        level3_parts = ([down3] if self.shortcuts else []) + [self.stage3(down3)]
        logits = self.classifier(_normalised_concat(self.level3_norm, level3_parts))
        return EncoderFeatures(stem, level1, level2, logits)

    def forward(self, image: Tensor) -> Tensor:
        """Return N x C x ceil(H / 8) x ceil(W / 8) logits for an N x 3 x H x W image."""
        return self.features(image).logits

    def bf16_tolerant_convolutions(self) -> list[str]:
        """
        Name the convolutions whose inputs and weights may be rounded to bf16 (``mixed``).

        These are the dilated branches of the residual ESP modules at 1/4 and 1/8 resolution:
        most of the encoder's arithmetic. Their outputs are summed (HFF), normalised and
        added to the module input in fp32. With the decoder's list below, every ESPNet and
        ESPNet-C checkpoint keeps its labels within this package's 0.5% of fp32's; bf16
        everywhere does not (docs/performance.md).
        """
        return [f'{stage}.{index}.branches.{branch}'
                for stage in ('stage2', 'stage3')
                for index, module in enumerate(getattr(self, stage))
                for branch in range(len(module.branches))]


class ESPNetC(ESPEncoder):
    """
    ESPNet-C: the encoder with shortcuts and input reinforcement (paper Fig. 4c).

    N x 3 x H x W -> N x C x ceil(H / 8) x ceil(W / 8).
    """

    def __init__(self, *, num_classes: int, p: int = 2, q: int = 3) -> None:
        """Build ESPNet-C with ``p`` ESP modules at 1/4 and ``q`` at 1/8 resolution."""
        super().__init__(num_classes=num_classes, p=p, q=q, shortcuts=True,
                         input_reinforcement=True)


def espnet_a(*, num_classes: int, p: int = 2, q: int = 3) -> ESPEncoder:
    """Return ESPNet-A: the plain stack of ESP modules (paper Fig. 4a); no checkpoint exists."""
    return ESPEncoder(num_classes=num_classes, p=p, q=q, shortcuts=False,
                      input_reinforcement=False)


def espnet_b(*, num_classes: int, p: int = 2, q: int = 3) -> ESPEncoder:
    """Return ESPNet-B: ESPNet-A with shortcut concatenations (Fig. 4b); no checkpoint exists."""
    return ESPEncoder(num_classes=num_classes, p=p, q=q, shortcuts=True,
                      input_reinforcement=False)


class ESPNet(nn.Module):
    """
    ESPNet: ESPNet-C and a light decoder, N x 3 x H x W -> N x C x H x W (paper Fig. 4d).

    The decoder upsamples the 1/8 logits, merges them with a 1x1 projection of the 1/4 map
    through an ESP module, upsamples, merges with a level-1 map by a 3x3 convolution and
    upsamples to full size with transposed convolutions. H and W must be multiples of 8.

    ``decoder_skip`` names that level-1 map: ``'stem'`` (16 channels, the first
    convolution's output) is what the authors' test-time model uses and the Cityscapes
    checkpoints hold; ``'reinforced'`` (19 channels, after input reinforcement) is what
    their training-time model uses and the CamVid checkpoint holds.

    The decoder is as wide as the class count, as in the paper; ``decoder_channels`` sets
    another width (the last transposed convolution then maps it to ``num_classes``), for
    class tables smaller than the ESP module's branch count, which the paper's decoder
    cannot have.
    """

    def __init__(self, *, num_classes: int, p: int = 2, q: int = 3,
                 decoder_skip: DecoderSkip = 'stem',
                 decoder_channels: Optional[int] = None) -> None:
        """Build ESPNet around ESPNet-C(``num_classes``, ``p``, ``q``); see the class doc."""
        super().__init__()
        if decoder_skip not in ('stem', 'reinforced'):
            raise ValueError(f"decoder_skip must be 'stem' or 'reinforced', not {decoder_skip!r}")
        width = decoder_channels or num_classes
        self.encoder = ESPNetC(num_classes=width, p=p, q=q)
        self.skip_stem = decoder_skip == 'stem'
        skip_channels = LEVEL_CHANNELS[0] if self.skip_stem else self.encoder.level1_channels
        self.level3_bn = nn.BatchNorm2d(width, eps=ESPNET_BN_EPS)
        self.level3_up = upsampling_conv(width)
        self.level2_proj = same_conv(self.encoder.level2_channels, width, 1)
        self.level2_merge_norm = BNPReLU(2 * width)
        self.level2_merge = ESP(2 * width, width, residual=False)
        self.level2_up = UpConvBNPReLU(width)
        self.level1_merge = ConvBNPReLU(width + skip_channels, width, 3)
        self.classifier = upsampling_conv(width, num_classes)

    def forward(self, image: Tensor) -> Tensor:
        """Return N x C x H x W logits for an N x 3 x H x W image."""
        return self.classifier(self.classifier_input(image))

    def classifier_input(self, image: Tensor) -> Tensor:
        """Return the N x width x H/2 x W/2 map the last transposed convolution upsamples."""
        features = self.encoder.features(image)
        level3 = self.level3_up(self.level3_bn(features.logits))
        # Concatenated first: normalised part by part, the transposed convolution's output
        # would meet a batch norm of its own, which inductor folds into it wrongly (the
        # labels of a compiled graph came out wrong; docs/performance.md).
        level2 = torch.cat([self.level2_proj(features.level2), level3], 1)
        level2 = self.level2_merge(self.level2_merge_norm(level2))
        level2 = self.level2_up(level2)
        skip = features.stem if self.skip_stem else features.level1
        return self.level1_merge(torch.cat([level2, skip], 1))

    def bf16_tolerant_convolutions(self) -> list[str]:
        """
        Name the convolutions that may run in bf16 (``mixed``; see the encoder's list).

        The encoder's, and the decoder's 3x3 merge at 1/2 resolution: the largest single
        convolution.
        """
        return ([f'encoder.{name}' for name in self.encoder.bf16_tolerant_convolutions()]
                + ['level1_merge.conv'])


# The authors' module names, in the order they are tried, and ours; 'classifier.conv.' (their
# encoder's 1x1 classifier) must come before 'classifier.' (their decoder's last layer).
_MODULE_RENAMES = (
    ('level1.', 'stem.'), ('b1.', 'level1_norm.'), ('level2_0.', 'down2.'),
    ('level2.', 'stage2.'), ('b2.', 'level2_norm.'), ('level3_0.', 'down3.'),
    ('level3.', 'stage3.'), ('b3.', 'level3_norm.'), ('classifier.conv.', 'classifier.'),
    ('br.', 'level3_bn.'), ('up_l3.0.', 'level3_up.'), ('level3_C.conv.', 'level2_proj.'),
    ('combine_l2_l3.0.', 'level2_merge_norm.'), ('combine_l2_l3.1.', 'level2_merge.'),
    ('up_l2.0.', 'level2_up.conv.'), ('up_l2.1.', 'level2_up.'), ('conv.', 'level1_merge.'),
)
_ESP_KEY = re.compile(r'^((?:encoder\.)?(?:down\d|stage\d\.\d+|level2_merge)\.)(.*)$')
# Inside an ESP: their branches are named after the dilation rate, ours by position; their
# residual modules wrap batch norm + PReLU in one more module than their strided ones.
_ESP_PART_RENAMES: tuple[tuple[re.Pattern, Union[str, Callable[[re.Match], str]]], ...] = (
    (re.compile(r'^c1\.conv\.'), 'reduce.'),
    (re.compile(r'^d(\d+)\.conv\.'), lambda m: f'branches.{int(m[1]).bit_length() - 1}.'),
    (re.compile(r'^bn\.(bn|act)\.'), r'norm.\1.'),
    (re.compile(r'^(bn|act)\.'), r'norm.\1.'),
)


def espnet_architecture_for_classes(architecture: Mapping[str, Any], base_classes: int,
                                    num_classes: int) -> dict[str, Any]:
    """
    Return ESPNet's ``architecture`` (made for ``base_classes``) for ``num_classes`` outputs.

    ESPNet's decoder is as wide as the class count and its ESP module needs one channel per
    branch; a smaller table keeps the base's decoder width (and so the whole base decoder),
    mapped to the classes by the last transposed convolution alone.
    """
    adapted = dict(architecture)
    if num_classes < len(ESP_DILATIONS):
        adapted['decoder_channels'] = base_classes
    return adapted


def _rename(key: str) -> str:
    key = key.removeprefix('module.')
    scope = 'encoder.' if key.startswith('encoder.') else ''
    key = key.removeprefix(scope)
    for theirs, ours in _MODULE_RENAMES:
        if key.startswith(theirs):
            key = ours + key.removeprefix(theirs)
            break
    key = scope + key
    esp = _ESP_KEY.match(key)
    if esp is not None:
        for pattern, replacement in _ESP_PART_RENAMES:
            part, found = pattern.subn(replacement, esp[2], count=1)
            if found:
                return esp[1] + part
    return key


def espnet_checkpoint_filter(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """
    Map an official ESPNet or ESPNet-C state dict's keys to this module's names.

    Strips DataParallel's ``module.`` prefix. Keys already in our names pass unchanged. The
    checkpoints predate ``num_batches_tracked``; batch norm fills it in on load.
    """
    return {_rename(key): value for key, value in state_dict.items()}
