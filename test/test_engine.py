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


"""The inference engine on real images: plausible scenes, channel orders, sizes, errors."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from espnet_ros.runtime.engine import check_input_size, EngineConfigError, SegmentationEngine
from espnet_ros.zoo.registry import get_spec

STREET_MODELS = ('espnet_p2q8_cityscapes', 'espnetv2_s2.0_cityscapes_1024x512')
ROAD, BUILDING, SKY = 0, 2, 10


def dominant(labels: np.ndarray) -> int:
    """Return the most frequent label."""
    return int(np.bincount(labels.ravel()).argmax())


@pytest.mark.parametrize('name', STREET_MODELS)
def test_cityscapes_image_is_a_street_scene(name: str, street_bgr: np.ndarray,
                                            weights_dir: Path) -> None:
    engine = SegmentationEngine.from_pretrained(name, weights_dir=weights_dir, device='cpu')
    labels = engine.segment(street_bgr, order='bgr').labels
    height, width = labels.shape
    assert (height, width) == street_bgr.shape[:2]
    # The camera car's bonnet fills the bottom tenth (an ignored class in Cityscapes), so the
    # road is checked just above it, in the centre.
    road_band = labels[int(0.7 * height):int(0.85 * height), int(0.4 * width):int(0.6 * width)]
    assert dominant(road_band) == ROAD
    assert (road_band == ROAD).mean() > 0.7
    top_band = labels[:int(0.15 * height)]
    assert dominant(top_band) in (BUILDING, SKY)
    assert (top_band == ROAD).mean() < 0.01


@pytest.fixture(scope='module')
def small_engine(weights_dir: Path) -> SegmentationEngine:
    """Return a fast engine: ESPNet p=2, q=3 at 256x128."""
    return SegmentationEngine.from_pretrained('espnet_p2q3_cityscapes', weights_dir=weights_dir,
                                              input_size=(256, 128), device='cpu',
                                              backend='torch')


def test_rgb_and_bgr_orders_agree(small_engine: SegmentationEngine,
                                  street_bgr: np.ndarray) -> None:
    from_bgr = small_engine.segment(street_bgr, order='bgr').labels
    rgb = np.ascontiguousarray(street_bgr[..., ::-1])
    assert np.array_equal(small_engine.segment(rgb, order='rgb').labels, from_bgr)
    assert not np.array_equal(small_engine.segment(street_bgr, order='rgb').labels, from_bgr)


def test_batch_equals_single_frames_and_sizes(small_engine: SegmentationEngine,
                                              street_bgr: np.ndarray) -> None:
    small = cv2.resize(street_bgr, (640, 320))
    batch = small_engine.segment_batch([street_bgr, small], order='bgr', with_confidence=True)
    assert batch[0].labels.shape == street_bgr.shape[:2]
    assert batch[1].labels.shape == small.shape[:2]
    single = small_engine.segment(small, order='bgr', with_confidence=True)
    assert np.array_equal(batch[1].labels, single.labels)
    confidence = batch[0].confidence
    assert confidence.shape == street_bgr.shape[:2] and confidence.dtype == np.float32
    assert 1 / small_engine.spec.num_classes <= confidence.min() and confidence.max() <= 1.0
    network = small_engine.segment(street_bgr, order='bgr', output_resolution='network')
    assert network.labels.shape == (128, 256)


def test_encoder_logits_come_back_to_network_resolution(weights_dir: Path,
                                                        street_bgr: np.ndarray) -> None:
    engine = SegmentationEngine.from_pretrained('espnet_c_p2q3_cityscapes',
                                                weights_dir=weights_dir, input_size=(256, 128),
                                                device='cpu')
    batch = engine.preprocess([street_bgr], 'bgr')
    assert engine.network(batch).shape[-2:] == (16, 32)
    assert engine.infer(batch).shape[-2:] == (128, 256)


def test_onnxruntime_and_torch_backends_agree(weights_dir: Path, street_bgr: np.ndarray) -> None:
    labels = [SegmentationEngine.from_pretrained(
        'espnet_p2q3_cityscapes', weights_dir=weights_dir, input_size=(256, 128), device='cpu',
        backend=backend).segment(street_bgr, order='bgr').labels
        for backend in ('torch', 'onnxruntime')]
    assert (labels[0] == labels[1]).mean() > 0.999


def test_normalisation_matches_the_authors_recipe(small_engine: SegmentationEngine,
                                                  street_bgr: np.ndarray) -> None:
    # ESPNet's test script: BGR float, (x - mean) / std per channel, resize, then / 255.
    norm = small_engine.spec.normalization
    reference = street_bgr.astype(np.float32)
    reference = (reference - np.float32(norm.mean)) / np.float32(norm.std)
    reference = cv2.resize(reference, (256, 128)) / 255
    ours = small_engine.preprocess([street_bgr], 'bgr')[0].permute(1, 2, 0).numpy()
    # We resize uint8 before normalising, so values differ by at most one grey level.
    assert np.abs(ours - reference).max() < 1.0 / min(norm.std) / 255 + 1e-6


@pytest.mark.parametrize('name,asked,runs', [
    ('espnet_p2q3_cityscapes', None, (1024, 512)),
    ('espnet_p2q3_cityscapes', (0, 0), (1024, 512)),
    ('espnet_p2q3_cityscapes', (640, 360), (640, 360)),
    ('espnet_p2q3_cityscapes', (192, 0), (192, 96)),
    ('espnet_p2q3_cityscapes', (0, 200), (400, 200)),
    # CamVid trained at 480x360 (4:3): 200 wide is 150 high, rounded to the stride of 8.
    ('espnet_p2q8_camvid', (200, 0), (200, 152)),
    ('espnet_p2q8_camvid', (0, 64), (88, 64)),  # 85.3 wide: 88 is the nearest multiple
    ('espnetv2_s0.5_cityscapes_512x256', (0, 96), (192, 96)),
    ('espnetv2_s0.5_cityscapes_512x256', (32, 0), (32, 32)),  # never below one stride
])
def test_input_size_follows_the_training_aspect(name: str, asked: tuple, runs: tuple) -> None:
    """A side given as 0 follows the other at the training aspect ratio, on the stride."""
    assert check_input_size(get_spec(name), asked) == runs


@pytest.mark.parametrize('asked,message', [
    ((250, 0), 'input width 250 .* multiples of 8.*nearest: 248 or 256'),
    ((256, 4), 'input height 4 .* multiples of 8.*nearest: 8;'),
    ((-8, 0), 'input width -8 '),
])
def test_input_size_off_the_stride_is_refused(asked: tuple, message: str) -> None:
    """A side that is not a positive multiple of the stride is refused with the nearest ones."""
    with pytest.raises(EngineConfigError, match=message):
        check_input_size(get_spec('espnet_p2q3_cityscapes'), asked)


def test_lone_size_runs_in_the_engine(weights_dir: Path, street_bgr: np.ndarray) -> None:
    """The engine (and so every --size of the CLI) runs at the size the rule gives."""
    engine = SegmentationEngine.from_pretrained(
        'espnet_c_p2q3_cityscapes', weights_dir=weights_dir, input_size=(0, 64), device='cpu')
    assert engine.input_size == (128, 64)
    assert engine.preprocess([street_bgr], 'bgr').shape[-2:] == (64, 128)


def test_bad_configurations_are_refused_with_reasons(weights_dir: Path) -> None:
    with pytest.raises(EngineConfigError, match='multiples of 8'):
        SegmentationEngine.from_pretrained('espnet_p2q3_cityscapes', input_size=(250, 128))
    with pytest.raises(EngineConfigError, match='fp16 is for CUDA'):
        SegmentationEngine.from_pretrained('espnet_p2q3_cityscapes', precision='fp16',
                                           device='cpu')
    if not torch.cuda.is_available():
        with pytest.raises(EngineConfigError, match='CUDA is not available'):
            SegmentationEngine.from_pretrained('espnet_p2q3_cityscapes', device='cuda')
    with pytest.raises(EngineConfigError, match='device must be auto, cpu, cuda or cuda:N'):
        SegmentationEngine.from_pretrained('espnet_p2q3_cityscapes', device='tpu')


def test_bad_images_are_refused(small_engine: SegmentationEngine) -> None:
    with pytest.raises(ValueError, match='H x W x 3 uint8'):
        small_engine.segment(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match='H x W x 3 uint8'):
        small_engine.segment(np.zeros((10, 10, 3), np.float32))
