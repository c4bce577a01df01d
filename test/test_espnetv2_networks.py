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

"""Tests of the ESPNetv2 segmentation network and its official EdgeNets checkpoints."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from espnet_ros.networks.espnetv2 import (adaptive_avg_pool, EESP, eesp_dilations, EESPNet,
                                          EESPTransform, espnetv2_checkpoint_filter,
                                          ESPNetv2Segmentation, hierarchical_feature_fusion,
                                          StridedEESP)

SHARED = Path(__file__).resolve().parents[1].parent / 'shared'
WEIGHTS = SHARED / 'weights' / 'espnetv2'
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f'{SHARED} is absent')

SCALES = (0.5, 1.0, 1.5, 2.0)
CHECKPOINTS = [f'espnetv2_s_{scale}_{dataset}_{size}.pth' for scale in SCALES
               for dataset, size in (('city', '512x256'), ('city', '1024x512'),
                                     ('pascal', '256x256'), ('pascal', '384x384'))]
# Measured: 20 outputs (Cityscapes) and 21 (PASCAL VOC) per scale.
PARAMETERS = {
    (0.5, 20): 80_230, (0.5, 21): 80_241,
    (1.0, 20): 233_786, (1.0, 21): 233_797,
    (1.5, 20): 468_010, (1.5, 21): 468_021,
    (2.0, 20): 788_762, (2.0, 21): 788_773,
}


def _config(name: str) -> tuple[float, int]:
    """Return (scale, num_classes) of a checkpoint file name."""
    return float(name.split('_')[2]), (20 if '_city_' in name else 21)


def _load(name: str) -> ESPNetv2Segmentation:
    scale, num_classes = _config(name)
    model = ESPNetv2Segmentation(num_classes=num_classes, scale=scale).eval()
    # The files hold CUDA tensors in the legacy (pre-zip) format.
    state = torch.load(WEIGHTS / name, map_location='cpu', weights_only=True)
    model.load_state_dict(espnetv2_checkpoint_filter(state), strict=True)
    return model


def _pattern(height: int, width: int) -> torch.Tensor:
    """Smooth deterministic 1 x 3 x H x W input, identical on every platform."""
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float32),
                          torch.arange(width, dtype=torch.float32), indexing='ij')
    return torch.stack((torch.sin(0.11 * x) + 0.5 * torch.cos(0.05 * y),
                        torch.cos(0.07 * (x - y)), torch.sin(0.03 * x * y / 16))).unsqueeze(0)


@needs_shared
@pytest.mark.parametrize('name', CHECKPOINTS)
def test_official_checkpoint_loads_strictly(name: str) -> None:
    model = _load(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[_config(name)]


@needs_shared
def test_filter_is_idempotent_and_strips_data_parallel_prefix() -> None:
    state = torch.load(WEIGHTS / CHECKPOINTS[0], map_location='cpu', weights_only=True)
    filtered = espnetv2_checkpoint_filter(state)
    wrapped = espnetv2_checkpoint_filter({f'module.{k}': v for k, v in state.items()})
    again = espnetv2_checkpoint_filter(filtered)
    assert list(wrapped) == list(filtered) == list(again)
    assert all(torch.equal(filtered[k], again[k]) for k in filtered)
    # The unused PReLU of the three strided EESP branches is dropped.
    assert len(state) - len(filtered) == 3


# Logits at pixel (H/2, W/3) of _pattern computed by a transcription of the authors'
# EdgeNets network (model/segmentation/espnetv2.py) with the same checkpoint.
AUTHORS_LOGITS = {
    ('espnetv2_s_0.5_city_512x256.pth', 64, 128): [
        -0.3941, -6.0733, -0.8569, -3.2576, 0.223, -1.5398, -0.1964, 1.2075, -0.7893, -5.9167,
        -0.3443, -3.7071, -2.5253, 14.6033, 5.0892, 5.2238, 1.5461, 1.6606, -0.4392, -3.3997],
    ('espnetv2_s_2.0_pascal_256x256.pth', 96, 64): [
        7.1707, -0.4038, -1.5367, 0.1218, -2.1358, 1.836, -6.1842, -2.6323, 2.8027, 2.8174,
        -4.0512, 0.3552, -2.5317, -2.8196, -6.6359, 5.4374, 5.6427, -1.6259, 1.3111, -0.2276,
        3.2961],
}


@needs_shared
@pytest.mark.parametrize(('name', 'height', 'width'), list(AUTHORS_LOGITS))
def test_logits_match_the_authors_network(name: str, height: int, width: int) -> None:
    with torch.no_grad():
        logits = _load(name)(_pattern(height, width))
    expected = torch.tensor(AUTHORS_LOGITS[name, height, width])
    torch.testing.assert_close(logits[0, :, height // 2, width // 3], expected,
                               rtol=0, atol=5e-4)


@needs_shared
def test_cityscapes_frame_bottom_centre_is_road() -> None:
    cv2 = pytest.importorskip('cv2')
    bgr = cv2.imread(str(SHARED / 'data' / 'cityscapes' /
                         'frankfurt_000000_000576_leftImg8bit.png'))
    rgb = cv2.resize(bgr, (512, 256), interpolation=cv2.INTER_AREA)[:, :, ::-1] / 255.0
    image = (rgb - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)
    x = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
    with torch.no_grad():
        labels = _load('espnetv2_s_0.5_city_512x256.pth')(x).argmax(1)[0]
    road = 0
    assert torch.bincount(labels[220:, 200:312].flatten()).argmax() == road


@pytest.mark.parametrize(('height', 'width'), [(256, 512), (96, 160), (50, 70)])
def test_output_has_input_size(height: int, width: int) -> None:
    torch.manual_seed(0)
    model = ESPNetv2Segmentation(num_classes=20, scale=0.5).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, height, width))
    assert logits.shape == (2, 20, height, width)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(('scale', 'num_classes'), list(PARAMETERS))
def test_parameter_count(scale: float, num_classes: int) -> None:
    model = ESPNetv2Segmentation(num_classes=num_classes, scale=scale)
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[scale, num_classes]


def test_unknown_scale_is_rejected() -> None:
    with pytest.raises(ValueError, match='scale'):
        EESPNet(scale=1.25)


def test_backbone_feature_shapes() -> None:
    features = EESPNet(scale=1.0).eval()(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape) for f in features] == [
        (1, 32, 32, 48), (1, 64, 16, 24), (1, 128, 8, 12), (1, 256, 4, 6)]


def test_eesp_block_shapes() -> None:
    x = torch.randn(2, 64, 13, 20)
    assert EESP(64, max_receptive_field=7)(x).shape == (2, 64, 13, 20)
    assert EESPTransform(64, 32, stride=2, max_receptive_field=9)(x).shape == (2, 32, 7, 10)
    image = torch.randn(2, 3, 7, 10)
    assert StridedEESP(64, 128, max_receptive_field=9)(x, image).shape == (2, 128, 7, 10)
    with pytest.raises(ValueError, match='branches'):
        EESPTransform(64, 30, max_receptive_field=9)


def test_eesp_dilations() -> None:
    assert eesp_dilations(4, 13) == [1, 2, 3, 4]
    assert eesp_dilations(4, 9) == [1, 2, 3, 4]
    assert eesp_dilations(4, 7) == [1, 1, 2, 3]
    assert eesp_dilations(4, 3) == [1, 1, 1, 1]


def test_hierarchical_feature_fusion() -> None:
    branches = [torch.full((1, 2, 3, 3), float(k)) for k in (1, 2, 3)]
    fused = hierarchical_feature_fusion(branches)
    assert fused.shape == (1, 6, 3, 3)
    assert fused[0, :, 0, 0].tolist() == [1, 1, 3, 3, 6, 6]


@pytest.mark.parametrize(('size_in', 'size_out'), [
    ((16, 32), (5, 5)), ((13, 26), (2, 3)), ((32, 64), (16, 48)), ((2, 3), (5, 5)),
    ((30, 40), (30, 20)), ((128, 256), (13, 26))])
def test_adaptive_avg_pool_matches_torch(size_in: tuple[int, int],
                                         size_out: tuple[int, int]) -> None:
    x = torch.randn(2, 3, *size_in, dtype=torch.float64)
    torch.testing.assert_close(adaptive_avg_pool(x, size_out),
                               F.adaptive_avg_pool2d(x, size_out), rtol=0, atol=1e-12)
