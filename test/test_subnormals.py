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
No loaded network carries a subnormal weight: not as loaded, not folded, not cast.

The official checkpoints hold tens of thousands of them, each an Intel micro-code assist per
use (issue 22: ESPNet 11x slower). These tests fail on a loader that keeps them.
"""

import pytest
import torch

from espnet_ros.networks import count_subnormals, flush_subnormals
from espnet_ros.runtime.graph_builder import prepare_network
from espnet_ros.runtime.mixed_precision import supports_mixed_precision
from espnet_ros.runtime.runners import TorchRunner
from espnet_ros.zoo import checkpoints, DEFAULT_MODEL, registry

OFFICIAL_NAMES = list(registry.official())


def test_the_default_checkpoint_does_carry_subnormal_weights(weights_dir) -> None:
    """The premise: without the flush the default model has thousands of them."""
    spec = registry.get_spec(DEFAULT_MODEL)
    path = registry.resolve_checkpoint(spec, weights_dir=weights_dir)
    network = spec.build()
    network.load_state_dict(registry.FAMILIES[spec.family].checkpoint_filter(
        checkpoints.read_state_dict(path)))
    assert count_subnormals(network) > 1000


@pytest.mark.parametrize('name', OFFICIAL_NAMES)
def test_every_registry_network_loads_without_subnormal_weights(name: str, pretrained) -> None:
    assert count_subnormals(pretrained(name)) == 0


@pytest.mark.parametrize('precision', ['fp32', 'mixed'])
def test_runner_and_compiled_graph_networks_have_no_subnormal_weights(
        precision: str, pretrained) -> None:
    network = pretrained(DEFAULT_MODEL)
    assert supports_mixed_precision(network)
    runner = TorchRunner(network, device=torch.device('cpu'), dtype=torch.float32,
                         mixed=precision == 'mixed')
    assert count_subnormals(runner.network) == 0
    assert count_subnormals(prepare_network(network, precision)) == 0


def test_half_precision_cast_is_flushed_too(pretrained) -> None:
    """fp16's smallest normal is 6.1e-5: casting makes subnormals the runner must flush."""
    network = pretrained(DEFAULT_MODEL)
    assert count_subnormals(_copy_half(network)) > 0
    runner = TorchRunner(network, device=torch.device('cpu'), dtype=torch.float16, fold=True)
    assert count_subnormals(runner.network) == 0


def test_flush_zeroes_exactly_the_subnormals() -> None:
    tiny = torch.finfo(torch.float32).tiny
    layer = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[tiny / 4, -tiny / 8, tiny, 0.5]]))
    assert count_subnormals(layer) == 2
    assert flush_subnormals(layer) == 2
    assert layer.weight.tolist() == [[0.0, 0.0, tiny, 0.5]]


def _copy_half(network: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(network).half()
