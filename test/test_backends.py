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


"""Runners on the real checkpoints: exact batch-norm folding, options, backend choice."""

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from espnet_ros.networks.layers import ConvBN, ConvBNPReLU, UpConvBNPReLU
from espnet_ros.runtime.engine import (EngineConfig, EngineConfigError, RunnerOptions,
                                       SegmentationEngine)
from espnet_ros.runtime.runners import (build_runner, fold_batch_norms, OnnxRuntimeRunner,
                                        TorchRunner)
from espnet_ros.zoo.registry import get_spec, load

SIZE = (256, 128)
FOLD_MODELS = ('espnet_p2q8_cityscapes', 'espnetv2_s0.5_cityscapes_512x256')
CPU = torch.device('cpu')


@functools.lru_cache(maxsize=None)
def network(name: str, weights_dir: Path) -> nn.Module:
    """Load a registry model once per test session."""
    return load(name, weights_dir)


def street_batch(name: str, weights_dir: Path, image: np.ndarray) -> torch.Tensor:
    """Return the image normalised for model ``name`` at SIZE, 1 x 3 x H x W."""
    engine = SegmentationEngine(get_spec(name), network(name, weights_dir),
                                EngineConfig(input_size=SIZE, backend='torch'))
    return engine.preprocess([image], 'bgr')


def batch_norms(module: nn.Module) -> int:
    return sum(isinstance(unit, nn.BatchNorm2d) for unit in module.modules())


@pytest.mark.parametrize('name', FOLD_MODELS)
def test_folding_batch_norms_is_exact(name: str, weights_dir: Path,
                                      street_bgr: np.ndarray) -> None:
    original = network(name, weights_dir)
    batch = street_batch(name, weights_dir, street_bgr)
    runner = TorchRunner(original, device=CPU, dtype=torch.float32, channels_last=False)
    # Every batch norm that directly follows a convolution is gone; the original is intact.
    assert batch_norms(runner.network) < batch_norms(original)
    assert not any(isinstance(unit.bn, nn.BatchNorm2d) for unit in runner.network.modules()
                   if isinstance(unit, ConvBN))
    with torch.inference_mode():
        expected = original(batch)
        folded = runner(batch)
    assert torch.allclose(folded, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize('make_unit', (lambda: ConvBNPReLU(3, 8, 3, stride=2),
                                       lambda: UpConvBNPReLU(8)),
                         ids=('convolution', 'transposed'))
def test_fold_batch_norms_folds_in_place_and_keeps_the_function(make_unit) -> None:
    torch.manual_seed(0)
    unit = make_unit().eval()
    with torch.no_grad():
        unit.bn.running_mean.uniform_(-1, 1)
        unit.bn.running_var.uniform_(0.5, 2)
        unit.bn.weight.uniform_(0.5, 2)
        unit.bn.bias.uniform_(-1, 1)
    x = torch.randn(2, unit.conv.in_channels, 16, 16)
    expected, kind = unit(x), type(unit.conv)
    assert fold_batch_norms(unit) is unit
    assert isinstance(unit.bn, nn.Identity) and unit.conv.bias is not None
    assert type(unit.conv) is kind
    assert torch.allclose(unit(x), expected, atol=1e-5)


def test_compiled_network_with_a_batch_norm_after_a_transposed_convolution() -> None:
    # Inductor's own folding of this pair (once weights are frozen) scaled the wrong axis of
    # the transposed weights; fold_batch_norms must leave it nothing to fold.
    torch.manual_seed(0)
    unit = UpConvBNPReLU(8).eval()
    with torch.no_grad():
        unit.bn.running_var.uniform_(0.5, 2)
        unit.bn.weight.uniform_(0.5, 2)
    x = torch.randn(1, 8, 16, 16)
    with torch.inference_mode():
        expected = unit(x)
    runner = TorchRunner(unit, device=CPU, dtype=torch.float32, compile_network=True)
    assert torch.allclose(runner(x), expected, atol=1e-5)


@pytest.mark.parametrize('channels_last', (True, False))
def test_torch_runner_cpu_path_matches_eager(channels_last: bool, weights_dir: Path,
                                             street_bgr: np.ndarray) -> None:
    name = 'espnet_p2q8_cityscapes'
    batch = street_batch(name, weights_dir, street_bgr)
    # cuda_graph is ignored off CUDA: the CPU path runs, not a capture.
    runner = TorchRunner(network(name, weights_dir), device=CPU, dtype=torch.float32,
                         cuda_graph=True, channels_last=channels_last)
    assert not runner.use_cuda_graph
    with torch.inference_mode():
        expected = network(name, weights_dir)(batch)
    logits = runner(batch)
    assert logits.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert torch.allclose(logits, expected, atol=1e-4)
    runner.release()
    runner.to_device()
    assert torch.allclose(runner(batch), logits, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA graphs need an NVIDIA GPU')
def test_torch_runner_cuda_graph_replays_the_network(weights_dir: Path,
                                                     street_bgr: np.ndarray) -> None:
    name = 'espnet_p2q8_cityscapes'
    batch = street_batch(name, weights_dir, street_bgr).cuda()
    device = torch.device('cuda')
    plain = TorchRunner(network(name, weights_dir), device=device, dtype=torch.float32)
    graphed = TorchRunner(network(name, weights_dir), device=device, dtype=torch.float32,
                          cuda_graph=True)
    assert graphed.use_cuda_graph
    expected = plain(batch)
    assert torch.allclose(graphed(batch), expected, atol=1e-3)
    assert torch.allclose(graphed(batch.flip(-1)), plain(batch.flip(-1)), atol=1e-3)
    graphed.release()
    graphed.to_device()
    assert torch.allclose(graphed(batch), expected, atol=1e-3)


def test_build_runner_passes_the_benchmark_options(weights_dir: Path) -> None:
    name = 'espnet_p2q3_cityscapes'
    original, spec = network(name, weights_dir), get_spec(name)
    plain = EngineConfig(input_size=SIZE, backend='torch',
                         runner=RunnerOptions(fold=False, channels_last=False))
    eager = build_runner(original, plain.resolve(spec))
    default = build_runner(original, EngineConfig(input_size=SIZE, backend='torch').resolve(spec))
    assert batch_norms(eager.network) == batch_norms(original)
    assert eager.memory_format == torch.contiguous_format
    assert batch_norms(default.network) < batch_norms(original)
    assert default.memory_format == torch.channels_last
    with pytest.raises(EngineConfigError, match='runs fp32 or int8, not bf16'):
        EngineConfig(input_size=SIZE, backend='onnxruntime', precision='bf16').resolve(spec)


def test_onnxruntime_runner_matches_torch_and_does_not_spin(weights_dir: Path,
                                                            street_bgr: np.ndarray) -> None:
    name = 'espnetv2_s0.5_cityscapes_512x256'
    batch = street_batch(name, weights_dir, street_bgr)
    runner = OnnxRuntimeRunner(network(name, weights_dir), input_size=SIZE)
    options = runner.session.get_session_options()
    assert options.get_session_config_entry('session.intra_op.allow_spinning') == '0'
    with torch.inference_mode():
        expected = network(name, weights_dir)(batch)
    logits = runner(batch)
    assert logits.shape == expected.shape
    assert logits.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(logits, expected, atol=1e-3)


def resolved_backend(backend: str, device: str = 'cpu', compile_mode: str = 'eager') -> str:
    """Return the runner's backend the one configuration check gives."""
    config = EngineConfig(backend=backend, device=device, compile_mode=compile_mode)
    return config.resolve(get_spec('espnet_p2q3_cityscapes')).backend


def test_resolve_backend_choices_and_errors() -> None:
    assert resolved_backend('auto') == 'torch'
    if torch.cuda.is_available():
        assert resolved_backend('auto', 'cuda') == 'torch'
    for backend in ('torch', 'torch-compile', 'onnxruntime'):
        assert resolved_backend(backend) == backend
    # One way to compile: compile_mode jit; backend torch-compile is its older spelling.
    assert resolved_backend('auto', compile_mode='jit') == 'torch-compile'
    assert resolved_backend('torch', compile_mode='jit') == 'torch-compile'
    with pytest.raises(EngineConfigError, match='not one of auto, torch'):
        resolved_backend('tensorrt')
    with pytest.raises(EngineConfigError, match='compile_mode jit compiles PyTorch'):
        resolved_backend('onnxruntime', compile_mode='jit')
    if torch.cuda.is_available():
        with pytest.raises(EngineConfigError, match='runs on the CPU'):
            resolved_backend('onnxruntime', 'cuda')
