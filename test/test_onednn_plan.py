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


"""Backend onednn on the real checkpoints and frames: the plan against the network it lays out."""

import os
from pathlib import Path
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from espnet_ros.runtime.engine import EngineConfig, EngineConfigError, SegmentationEngine
from espnet_ros.runtime.folding import folded_fp32_copy
from espnet_ros.runtime.mixed_precision import cpu_bf16_supported
from espnet_ros.runtime.onednn_plan import onednn_wheels_published, PlanNetwork
from espnet_ros.tools import startup_bench
from espnet_ros.zoo.registry import get_spec

# Where PyPI has oneDNN's wheels the requirements install them, so a missing one fails these
# tests instead of skipping them.
pytestmark = pytest.mark.skipif(not onednn_wheels_published(),
                                reason='PyPI has oneDNN wheels for x86-64 Linux only')

STREET_SIZE = (512, 256)
CAMVID_SIZE = (480, 360)
CAMVID_FRAMES = 4
# The benchmarks' rule for a fast path: labels equal to eager fp32's on 99.5% of pixels.
MIXED_AGREEMENT = 0.995
# fp32: the same arithmetic in another order; a near-tie may flip.
FP32_AGREEMENT = 0.9999
FP32_RELATIVE_ERROR = 1e-4
# Every layout the plan has: ESPNet with each decoder skip, and ESPNet-C.
PLAN_MODELS = ['espnet_p2q8_cityscapes', 'espnet_p2q8_camvid', 'espnet_c_p2q8_cityscapes']


def engine_for(name: str, network, size: tuple[int, int], backend: str,
               precision: str = 'fp32') -> SegmentationEngine:
    """Return an engine of a loaded registry network on the CPU."""
    return SegmentationEngine(get_spec(name), network, EngineConfig(
        input_size=size, backend=backend, precision=precision))


def camvid_frames(camvid_dir: Path) -> list[np.ndarray]:
    """Return the first CamVid val frames, BGR."""
    paths = sorted((camvid_dir / 'val').glob('*.png'))[:CAMVID_FRAMES]
    return [cv2.imread(str(path)) for path in paths]


def frames_for(name: str, street_bgr: np.ndarray, camvid_dir: Path
               ) -> tuple[tuple[int, int], list[np.ndarray]]:
    """Return a model's size and real frames of its own dataset."""
    if 'camvid' in name:
        return CAMVID_SIZE, camvid_frames(camvid_dir)
    return STREET_SIZE, [street_bgr]


def agreement(engine_a: SegmentationEngine, engine_b: SegmentationEngine,
              frames: list[np.ndarray]) -> float:
    """Return the share of equal labels of two engines over ``frames``."""
    equal = total = 0
    for frame in frames:
        a = engine_a.segment(frame, order='bgr').labels
        b = engine_b.segment(frame, order='bgr').labels
        equal += int((a == b).sum())
        total += a.size
    return equal / total


@pytest.mark.parametrize('name', PLAN_MODELS)
def test_fp32_plan_computes_the_folded_network(name: str, pretrained, street_bgr: np.ndarray,
                                               camvid_dir: Path) -> None:
    """Logits within float rounding of the network, on every skip and head layout."""
    size, frames = frames_for(name, street_bgr, camvid_dir)
    reference = engine_for(name, pretrained(name), size, 'torch')
    batch = reference.preprocess(frames[:1], 'bgr')
    plan = PlanNetwork(pretrained(name), mixed=False)
    with torch.inference_mode():
        expected = folded_fp32_copy(pretrained(name))(batch)
        found = plan(batch)
    assert found.shape == expected.shape
    error = float((found - expected).abs().max() / expected.abs().max())
    assert error < FP32_RELATIVE_ERROR
    onednn = engine_for(name, pretrained(name), size, 'onednn', 'fp32')
    assert onednn.describe_runner() == 'onednn (fp32)'
    assert agreement(onednn, reference, frames) >= FP32_AGREEMENT


@pytest.mark.skipif(not cpu_bf16_supported(), reason='this CPU has no native bf16')
@pytest.mark.parametrize('name', PLAN_MODELS)
def test_mixed_plan_keeps_the_labels_of_fp32(name: str, pretrained, street_bgr: np.ndarray,
                                             camvid_dir: Path) -> None:
    """Precision auto is mixed here, held to the fast paths' 99.5% against eager fp32."""
    size, frames = frames_for(name, street_bgr, camvid_dir)
    onednn = engine_for(name, pretrained(name), size, 'onednn', 'auto')
    assert onednn.describe_runner() == 'onednn (mixed)'
    reference = engine_for(name, pretrained(name), size, 'torch')
    assert agreement(onednn, reference, frames) >= MIXED_AGREEMENT


def test_confidence_batches_and_sizes(pretrained, street_bgr: np.ndarray,
                                      camvid_dir: Path) -> None:
    """Confidence as the eager head gives it; a batch as its frames; a plan per size."""
    name = 'espnet_p2q8_cityscapes'
    network = pretrained(name)
    onednn = engine_for(name, network, STREET_SIZE, 'onednn', 'fp32')
    reference = engine_for(name, network, STREET_SIZE, 'torch')
    found = onednn.segment(street_bgr, order='bgr', with_confidence=True)
    expected = reference.segment(street_bgr, order='bgr', with_confidence=True)
    same = found.labels == expected.labels
    assert same.mean() >= FP32_AGREEMENT
    assert np.abs(found.confidence - expected.confidence)[same].max() < 1e-4
    other = camvid_frames(camvid_dir)[0]
    both = onednn.segment_batch([street_bgr, other], order='bgr')
    for frame, result in zip((street_bgr, other), both):
        assert np.array_equal(result.labels, onednn.segment(frame, order='bgr').labels)
    smaller = onednn.runner.network(torch.zeros(1, 3, 128, 256))
    assert smaller.shape == (1, 20, 128, 256)
    assert len(onednn.runner.network.plans()) == 3  # batch 1 and 2 at 512x256, 256x128


def test_plan_refuses_what_it_cannot_lay_out(pretrained) -> None:
    """Shapes the network cannot take are refused before any step runs."""
    plan = PlanNetwork(pretrained('espnet_p2q8_cityscapes'), mixed=False)
    with pytest.raises(ValueError, match='multiples of 8'):
        plan(torch.zeros(1, 3, 250, 500))
    with pytest.raises(ValueError, match='N x 3 x H x W'):
        plan(torch.zeros(1, 4, 256, 512))


@pytest.mark.parametrize('config, reason', [
    ({'precision': 'bf16'}, 'backend onednn runs fp32 or mixed, not bf16'),
    ({'precision': 'int8'}, 'precision int8 runs on the CPU with backend onnxruntime'),
    ({'compile_mode': 'jit'}, 'backend onednn builds its own plan'),
    ({'device': 'cuda'}, 'cuda'),
])
def test_engine_refuses_settings_the_plan_cannot_run(config: dict, reason: str) -> None:
    with pytest.raises(EngineConfigError, match=reason):
        SegmentationEngine.from_pretrained('espnet_p2q8_cityscapes', backend='onednn', **config)


def test_engine_refuses_espnetv2_naming_its_family() -> None:
    with pytest.raises(EngineConfigError, match='family espnetv2'):
        SegmentationEngine.from_pretrained('espnetv2_s0.5_cityscapes_512x256',
                                           backend='onednn')


def test_a_missing_compiler_is_named(tmp_path: Path) -> None:
    """Where the plan cannot be compiled, building one says why, naming the compiler."""
    script = ('from espnet_ros.runtime.onednn_plan import load_plan_library\n'
              'print(load_plan_library())\n')
    environment = {**os.environ, 'CXX': str(tmp_path / 'no-such-compiler')}
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                            env=environment, timeout=120, check=True)
    assert f'$CXX names {tmp_path / "no-such-compiler"}, which is not found' in result.stdout


def test_startup_benchmark_says_why_it_leaves_the_plan_out() -> None:
    """bench-startup's onednn phase runs ESPNet here, and names why it cannot run ESPNetv2."""
    espnet = startup_bench.Request('espnet_p2q8_cityscapes', (512, 256), 1, 1)
    assert startup_bench.unavailable('onednn', espnet) is None
    assert startup_bench.unavailable('warm', espnet) is None
    espnetv2 = startup_bench.Request('espnetv2_s0.5_cityscapes_512x256', (512, 256), 1, 1)
    assert 'of family espnetv2' in startup_bench.unavailable('onednn', espnetv2)
    rows = startup_bench.run(espnetv2, phases=('onednn',))
    assert rows == [{'phase': 'onednn', 'not_run': startup_bench.unavailable('onednn', espnetv2)}]


def test_every_step_of_a_plan_is_named_and_timed(pretrained) -> None:
    """The profile's rows: one per step, named by what it does and its shapes."""
    plan = PlanNetwork(pretrained('espnet_p2q8_cityscapes'), mixed=False)
    batch = torch.zeros(1, 3, 64, 128)
    rows = plan.step_times(batch, runs=2)
    assert len(rows) == len(plan.plans()[0].steps) > 100
    assert rows[0][0] == 'convolution 3x3 s2 d1 3x64x128 -> 16x32x64'
    # down2, stage2 (p=2), down3, stage3 (q=8), the decoder's ESP
    assert sum(name.startswith('ESP merge') for name, _ in rows) == 1 + 2 + 1 + 8 + 1
    assert all(milliseconds >= 0 for _, milliseconds in rows)
    assert sum(milliseconds for _, milliseconds in rows) > 0
