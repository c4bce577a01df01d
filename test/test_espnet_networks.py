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

"""ESPNet (v1) networks: building blocks, shapes, and the official checkpoints."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from espnet_ros.networks.espnet import (ESP, esp_dilations, ESPNet, espnet_a, espnet_b,
                                        espnet_checkpoint_filter, ESPNetC, hierarchical_fusion,
                                        InputReinforcement, StridedESP)
from espnet_ros.networks.layers import BNPReLU

SHARED = Path(__file__).resolve().parents[1].parent / 'shared'
WEIGHTS = SHARED / 'weights' / 'espnet'
needs_shared = pytest.mark.skipif(not WEIGHTS.is_dir(),
                                  reason=f'official checkpoints not found at {WEIGHTS}')

# Every official v1 checkpoint: constructor, its arguments, and its exact parameter count.
CHECKPOINTS = {
    'encoder/espnet_p_2_q_3.pth': (ESPNetC, {'num_classes': 20, 'p': 2, 'q': 3}, 187_529),
    'encoder/espnet_p_2_q_5.pth': (ESPNetC, {'num_classes': 20, 'p': 2, 'q': 5}, 252_297),
    'encoder/espnet_p_2_q_8.pth': (ESPNetC, {'num_classes': 20, 'p': 2, 'q': 8}, 349_449),
    'decoder/espnet_p_2_q_3.pth': (ESPNet, {'num_classes': 20, 'p': 2, 'q': 3}, 202_649),
    'decoder/espnet_p_2_q_5.pth': (ESPNet, {'num_classes': 20, 'p': 2, 'q': 5}, 267_417),
    'decoder/espnet_p_2_q_8.pth': (ESPNet, {'num_classes': 20, 'p': 2, 'q': 8}, 364_569),
    'decoder/espnet_p_2_q_8_camvid.pth': (
        ESPNet, {'num_classes': 12, 'p': 2, 'q': 8, 'decoder_skip': 'reinforced'}, 354_517),
}


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _official(name: str) -> dict[str, torch.Tensor]:
    return torch.load(WEIGHTS / name, map_location='cpu', weights_only=True)


def _load(name: str) -> nn.Module:
    constructor, kwargs, _ = CHECKPOINTS[name]
    model = constructor(**kwargs)
    model.load_state_dict(espnet_checkpoint_filter(_official(name)), strict=True)
    return model.eval()


@needs_shared
def test_every_v1_checkpoint_is_covered() -> None:
    """The table below names every ESPNet checkpoint in ../shared, no more."""
    found = {str(path.relative_to(WEIGHTS)) for path in WEIGHTS.glob('*/*.pth')}
    assert found == set(CHECKPOINTS)


@needs_shared
@pytest.mark.parametrize('name', sorted(CHECKPOINTS))
def test_checkpoint_loads_strictly(name: str) -> None:
    """Each checkpoint loads strictly through the filter, every tensor in place."""
    constructor, kwargs, parameters = CHECKPOINTS[name]
    official = _official(name)
    filtered = espnet_checkpoint_filter(official)
    model = constructor(**kwargs)
    result = model.load_state_dict(filtered, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(filtered) == len(official)
    loaded = model.state_dict()
    for key, value in filtered.items():
        assert torch.equal(loaded[key], value), key
    assert _parameters(model) == parameters


@needs_shared
def test_filter_strips_data_parallel_prefix_and_keeps_our_names() -> None:
    """The filter drops ``module.`` and leaves already-mapped keys alone."""
    official = _official('decoder/espnet_p_2_q_8.pth')
    wrapped = {'module.' + key: value for key, value in official.items()}
    filtered = espnet_checkpoint_filter(official)
    assert espnet_checkpoint_filter(wrapped).keys() == filtered.keys()
    assert espnet_checkpoint_filter(filtered).keys() == filtered.keys()
    assert not any(key.startswith('module.') for key in filtered)


def test_espnet_p2_q8_has_the_published_036m_parameters() -> None:
    """The Cityscapes ESPNet p=2, q=8 has 364,569 parameters (paper: 0.36 M)."""
    # The paper's 0.36 M; 364,569 counted exactly (batch norm and PReLU included).
    assert _parameters(ESPNet(num_classes=20, p=2, q=8)) == 364_569


@pytest.mark.parametrize('height,width', [(64, 128), (24, 40), (360, 488), (27, 45)])
def test_espnet_c_outputs_ceil_one_eighth(height: int, width: int) -> None:
    """ESPNet-C outputs C x ceil(H/8) x ceil(W/8), also for odd sizes."""
    model = ESPNetC(num_classes=20).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, height, width))
    assert out.shape == (2, 20, -(-height // 8), -(-width // 8))


@pytest.mark.parametrize('decoder_skip', ['stem', 'reinforced'])
@pytest.mark.parametrize('height,width', [(64, 128), (24, 40), (360, 488)])
def test_espnet_outputs_full_resolution(decoder_skip: str, height: int, width: int) -> None:
    """The full ESPNet outputs full resolution for multiples of 8, odd ones included."""
    model = ESPNet(num_classes=12, decoder_skip=decoder_skip).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, height, width))
    assert out.shape == (1, 12, height, width)


def test_decoder_skip_sets_the_level1_merge_width() -> None:
    """The decoder variant decides which level-1 map the last merge takes."""
    assert ESPNet(num_classes=20).level1_merge.conv.in_channels == 16 + 20
    reinforced = ESPNet(num_classes=12, decoder_skip='reinforced')
    assert reinforced.level1_merge.conv.in_channels == 16 + 3 + 12
    with pytest.raises(ValueError):
        ESPNet(num_classes=20, decoder_skip='train')


def test_ablation_variants_build_and_run() -> None:
    """ESPNet-A, -B and -C differ only by their concatenations."""
    variants = {'a': espnet_a(num_classes=19, p=2, q=3), 'b': espnet_b(num_classes=19, p=2, q=3),
                'c': ESPNetC(num_classes=19, p=2, q=3)}
    for model in variants.values():
        with torch.no_grad():
            assert model.eval()(torch.randn(1, 3, 48, 80)).shape == (1, 19, 6, 10)
    # A: plain stack; B: + strided-ESP shortcuts; C: + the image at 1/2 and 1/4.
    assert [variants[v].level1_channels for v in 'abc'] == [16, 16, 19]
    assert [variants[v].level2_channels for v in 'abc'] == [64, 128, 131]
    assert [variants[v].classifier.in_channels for v in 'abc'] == [128, 256, 256]
    counts = [_parameters(variants[v]) for v in 'abc']
    assert counts[0] < counts[1] < counts[2]


def test_esp_dilation_rates_are_powers_of_two() -> None:
    """Branch k of an ESP is dilated by 2**(k-1) and padded to keep its size."""
    assert esp_dilations(5) == (1, 2, 4, 8, 16)
    module = ESP(64, 64)
    assert [branch.dilation for branch in module.branches] == [(r, r) for r in (1, 2, 4, 8, 16)]
    assert [branch.padding for branch in module.branches] == [(r, r) for r in (1, 2, 4, 8, 16)]
    assert ESP(30, 30, dilations=esp_dilations(3)).branches[2].dilation == (4, 4)


def test_esp_splits_channels_with_leftover_in_first_branch() -> None:
    """The first branch takes N_out - (K-1) * (N_out // K) channels."""
    module = ESP(131, 128, residual=False)
    assert module.reduce.out_channels == 25 and module.reduce.kernel_size == (1, 1)
    assert [branch.out_channels for branch in module.branches] == [28, 25, 25, 25, 25]
    with torch.no_grad():
        assert module(torch.randn(1, 131, 9, 13)).shape == (1, 128, 9, 13)


def test_strided_esp_halves_with_ceil() -> None:
    """A strided ESP reduces with a 3x3 stride-2 conv and halves sizes, rounding up."""
    module = StridedESP(19, 64)
    assert module.reduce.kernel_size == (3, 3) and module.reduce.stride == (2, 2)
    assert not module.residual
    with torch.no_grad():
        assert module(torch.randn(2, 19, 15, 20)).shape == (2, 64, 8, 10)


def test_esp_rejects_impossible_configurations() -> None:
    """Residual width mismatches and too few channels or branches raise."""
    with pytest.raises(ValueError):
        ESP(64, 32)  # residual with different widths
    with pytest.raises(ValueError):
        ESP(8, 4)  # fewer channels than branches
    with pytest.raises(ValueError):
        ESP(8, 8, dilations=(1,))


def test_esp_residual_adds_input_before_normalisation() -> None:
    """The residual is added to the fused branches before BN + PReLU."""
    torch.manual_seed(0)
    module = ESP(20, 20).eval()
    x = torch.randn(1, 20, 6, 6)
    with torch.no_grad():
        fused = hierarchical_fusion([b(module.reduce(x)) for b in module.branches])
        assert torch.equal(module(x), module.norm(fused + x))


def _random_norm(channels: int) -> BNPReLU:
    norm = BNPReLU(channels)
    with torch.no_grad():
        for tensor in (norm.bn.running_mean, norm.bn.weight, norm.bn.bias, norm.act.weight):
            tensor.copy_(torch.randn(channels))
        norm.bn.running_var.copy_(torch.rand(channels) + 0.5)
    return norm


def test_normalising_the_parts_equals_normalising_their_concatenation() -> None:
    """Eval mode normalises each part with its own channels' statistics, to the bit."""
    torch.manual_seed(0)
    norm = _random_norm(7).eval()
    parts = [torch.randn(2, 3, 5, 4), torch.randn(2, 1, 5, 4), torch.randn(2, 3, 5, 4)]
    with torch.no_grad():
        assert torch.equal(norm.of_concatenation(parts), norm(torch.cat(parts, 1)))
        assert torch.equal(norm.of_concatenation([torch.cat(parts, 1)]),
                           norm(torch.cat(parts, 1)))


def test_training_normalises_the_concatenation_and_updates_its_statistics() -> None:
    """Training keeps batch statistics and running averages exactly as the module does."""
    torch.manual_seed(0)
    norm = _random_norm(7).train()
    reference = _random_norm(7).train()
    reference.load_state_dict(norm.state_dict())
    parts = [torch.randn(2, 3, 5, 4), torch.randn(2, 4, 5, 4)]
    assert torch.equal(norm.of_concatenation(parts), reference(torch.cat(parts, 1)))
    for name, value in reference.state_dict().items():
        assert torch.equal(norm.state_dict()[name], value), name
    assert int(norm.bn.num_batches_tracked) == 1


def test_hierarchical_fusion_sums_progressively() -> None:
    """HFF passes the first branch and accumulates the others."""
    rest = [torch.full((1, 2, 1, 1), float(v)) for v in (10, 100, 1000)]
    out = hierarchical_fusion([torch.full((1, 3, 1, 1), 7.0)] + rest)
    assert out.flatten().tolist() == [7.0] * 3 + [10.0] * 2 + [110.0] * 2 + [1110.0] * 2


def test_input_reinforcement_pools_to_feature_sizes() -> None:
    """The image pyramid halves with ceil and averages over zero padding."""
    image = torch.arange(36.0).reshape(1, 1, 6, 6).expand(1, 3, 6, 6)
    half, quarter = InputReinforcement(2)(image)
    assert half.shape == (1, 3, 3, 3) and quarter.shape == (1, 3, 2, 2)
    # Zero padding counts in the mean: the corner averages 4 pixels over 9 cells.
    assert half[0, 0, 0, 0].item() == pytest.approx((0 + 1 + 6 + 7) / 9)


@pytest.mark.filterwarnings('ignore::DeprecationWarning')
def test_trace_matches_eager() -> None:
    """A traced ESPNet computes the eager result, also at another input size."""
    model = ESPNet(num_classes=20).eval()
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        traced = torch.jit.trace(model, x, check_trace=False)
        other = torch.randn(1, 3, 72, 104)
        assert torch.equal(traced(other), model(other))


# The authors' test-time input: BGR, (x - mean) / std on 0..255, then / 255.
CITYSCAPES_IMAGE = SHARED / 'data' / 'cityscapes' / 'frankfurt_000000_000576_leftImg8bit.png'
CITYSCAPES_MEAN = [72.3923111, 82.90893555, 73.15840149]
CITYSCAPES_STD = [45.3192215, 46.15289307, 44.91483307]
CAMVID_MEAN = [110.33105, 108.40889, 105.03322]
CAMVID_STD = [72.12569, 72.69077, 69.90434]


def _bgr_input(path: Path, mean: list[float], std: list[float],
               size: tuple[int, int]) -> torch.Tensor:
    image = cv2.resize(cv2.imread(str(path)), size).astype(np.float32)
    image = (image - np.float32(mean)) / np.float32(std) / 255.0
    return torch.from_numpy(image.transpose(2, 0, 1).copy()).unsqueeze(0)


# Logits of the parity-checked networks (equal to the authors' models' to float precision) on
# the shared samples: mean |logit| and classes 0-2 at pixel (10, 20).
PINNED = {
    'encoder/espnet_p_2_q_3.pth': (1.78637, (-2.76405, -1.94716, 7.47619)),
    'encoder/espnet_p_2_q_5.pth': (1.70596, (-0.84199, -0.36626, 6.51045)),
    'encoder/espnet_p_2_q_8.pth': (1.58702, (-2.01411, -1.17706, 7.53323)),
    'decoder/espnet_p_2_q_3.pth': (1.99598, (-4.60129, -0.79849, 8.47082)),
    'decoder/espnet_p_2_q_5.pth': (1.80617, (-4.30277, -0.21588, 8.17197)),
    'decoder/espnet_p_2_q_8.pth': (1.88970, (-5.05169, -1.25290, 8.73887)),
    'decoder/espnet_p_2_q_8_camvid.pth': (2.03193, (1.28637, 6.15132, 1.64462)),
}


def _sample(name: str) -> torch.Tensor:
    if 'camvid' in name:
        frame = sorted((SHARED / 'data' / 'camvid' / 'val').glob('*.png'))[0]
        return _bgr_input(frame, CAMVID_MEAN, CAMVID_STD, (480, 360))
    return _bgr_input(CITYSCAPES_IMAGE, CITYSCAPES_MEAN, CITYSCAPES_STD, (512, 256))


@needs_shared
@pytest.mark.parametrize('name', sorted(PINNED))
def test_checkpoint_logits_are_pinned(name: str) -> None:
    """Each checkpoint reproduces the logits its parity-checked run gave on a shared sample."""
    with torch.no_grad():
        logits = _load(name)(_sample(name))
    mean_abs, pixel = PINNED[name]
    assert logits.abs().mean().item() == pytest.approx(mean_abs, abs=1e-4)
    assert logits[0, :3, 10, 20].tolist() == pytest.approx(pixel, abs=1e-4)


@needs_shared
def test_cityscapes_checkpoint_sees_the_road() -> None:
    """The p=2, q=8 model labels the road ahead in the Cityscapes sample as road."""
    x = _bgr_input(CITYSCAPES_IMAGE, CITYSCAPES_MEAN, CITYSCAPES_STD, (1024, 512))
    with torch.no_grad():
        labels = _load('decoder/espnet_p_2_q_8.pth')(x).argmax(1)[0]
    road = 0
    assert (labels[320:416, 320:704] == road).float().mean() > 0.9


@needs_shared
def test_camvid_checkpoint_labels_validation_frames() -> None:
    """The CamVid checkpoint labels most pixels of two validation frames right."""
    model = _load('decoder/espnet_p_2_q_8_camvid.pth')
    frames = sorted((SHARED / 'data' / 'camvid' / 'val').glob('*.png'))[:2]
    correct = total = 0
    for frame in frames:
        x = _bgr_input(frame, CAMVID_MEAN, CAMVID_STD, (480, 360))
        truth = torch.from_numpy(cv2.imread(str(frame.parent.parent / 'valannot' / frame.name),
                                            cv2.IMREAD_GRAYSCALE)).long()
        with torch.no_grad():
            labels = model(x).argmax(1)[0]
        scored = truth < 11
        correct += int((labels[scored] == truth[scored]).sum())
        total += int(scored.sum())
    assert correct / total > 0.85
