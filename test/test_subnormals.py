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

import json
from pathlib import Path
import shutil
import threading
from typing import Any, Callable

import pytest
import torch

from espnet_ros.cli import main as cli_main
from espnet_ros.networks import count_subnormals, flush_subnormals
from espnet_ros.networks.subnormals import count_subnormal_values
from espnet_ros.runtime import process
from espnet_ros.runtime.graph_builder import prepare_network
from espnet_ros.runtime.mixed_precision import supports_mixed_precision
from espnet_ros.runtime.onednn_plan import onednn_wheels_published, PlanNetwork
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


@pytest.mark.skipif(not onednn_wheels_published(),
                    reason='PyPI has oneDNN wheels for x86-64 Linux only')
@pytest.mark.parametrize('mixed', [False, True])
def test_onednn_plan_is_given_no_subnormal_value(mixed: bool, pretrained) -> None:
    """The plan's weights and per-channel vectors (batch norms folded by it) included."""
    plan = PlanNetwork(pretrained(DEFAULT_MODEL), mixed=mixed)
    assert count_subnormals(plan.network) == 0
    with torch.inference_mode():
        plan(torch.zeros(1, 3, 64, 128))
    arrays = plan.plans()[0].arrays
    assert len(arrays) > 100
    assert sum(count_subnormal_values(torch.from_numpy(array)) for array in arrays) == 0


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


def _in_a_new_thread(function: Callable[[], Any]) -> Any:
    """Return ``function()`` run on a thread of its own (its floating-point modes die with it)."""
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=function()))
    thread.start()
    thread.join()
    return outcome['result']


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_subnormals_are_found_under_denormals_are_zero(dtype: torch.dtype) -> None:
    """With DAZ set a subnormal compares equal to zero: the count reads the bits instead."""
    tiny = torch.finfo(dtype).tiny
    layer = torch.nn.Linear(4, 1, bias=False).to(dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[tiny / 4, -tiny / 8, tiny, 0.5]],
                                        dtype=torch.float64).to(dtype))

    def count_and_flush() -> tuple[int, int]:
        process.flush_denormals()
        return count_subnormals(layer), flush_subnormals(layer)
    assert _in_a_new_thread(count_and_flush) == (2, 2)
    assert layer.weight.tolist() == [[0.0, 0.0, tiny, 0.5]]


def _underflows(threads: int) -> int:
    """Return how many of a parallel product's results are subnormal (0 under FTZ)."""
    halves = torch.full((1 << 20,), torch.finfo(torch.float32).tiny) * 0.5
    return int(((halves != 0) & (halves.abs() < torch.finfo(torch.float32).tiny)).sum())


def test_flush_denormals_reaches_the_threads_openmp_workers() -> None:
    """
    Set first thing, FTZ covers the thread and the OpenMP team it starts; opted in, too.

    A million-element product runs on every OpenMP worker of the thread: any worker left
    without the flag would write subnormal results.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert _in_a_new_thread(lambda: _underflows(2)) == 1 << 20  # the default modes
        if not _in_a_new_thread(process.flush_denormals):
            pytest.skip('this CPU cannot flush denormals')
        assert _in_a_new_thread(lambda: process.flush_denormals() and _underflows(2)) == 0
        assert _in_a_new_thread(lambda: process.prepare_inference_thread() or
                                _underflows(2)) == 1 << 20  # not opted in: nothing changes
        try:
            process._FLUSH_DENORMALS.set()  # what flush_denormals_in_inference_threads sets
            assert process.run_on_passing_thread(_underflows, 2) == 0
        finally:
            process._FLUSH_DENORMALS.clear()
    finally:
        torch.set_num_threads(threads)


def test_models_name_says_how_many_weights_are_set_to_zero(
        capsys: pytest.CaptureFixture, weights_dir: Path) -> None:
    assert cli_main(['models', DEFAULT_MODEL, '--weights-dir', str(weights_dir)]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if 'subnormal' in line]
    assert len(said) == 1
    assert said[0].startswith('subnormal weights set to zero at load: 18,302 of 368,341 ')


def test_engine_log_hears_the_count_once(weights_dir: Path) -> None:
    """The node's and the command line's log: one line from the registry, with the count."""
    from espnet_ros.runtime.engine import SegmentationEngine

    log: list = []
    SegmentationEngine.from_pretrained(DEFAULT_MODEL, weights_dir=weights_dir,
                                       input_size=(64, 32), log=log.append)
    assert [line for line in log if 'subnormal' in line] == [
        f'{DEFAULT_MODEL}: 18,302 subnormal weights of '
        f'{registry.resolve_checkpoint(registry.get_spec(DEFAULT_MODEL), weights_dir=weights_dir)}'
        ' set to zero (slow on Intel CPUs, below float rounding in the outputs)']


def test_outputs_comparison_command(tmp_path: Path, shared_dir: Path) -> None:
    """bench-subnormals: flushed against as loaded, on labelled frames, written as JSON."""
    camvid = shared_dir / 'data' / 'camvid'
    images, labels = tmp_path / 'val', tmp_path / 'valannot'
    images.mkdir()
    labels.mkdir()
    for path in sorted((camvid / 'val').glob('*.png'))[:2]:
        shutil.copy(path, images)
        shutil.copy(camvid / 'valannot' / path.name, labels)
    out = tmp_path / 'outputs.json'
    assert cli_main(['bench-subnormals', '--model', 'espnet_p2q8_camvid', '--size', '64x48',
                     '--images', str(images), '--labels', str(labels), '--frames',
                     '--threads', '1', '--json', str(out)]) == 0
    result, = json.loads(out.read_text())
    assert result['subnormal_weights'] == 10610 and result['size'] == '64x48'
    entry = result['sets']['camvid_val']
    assert entry['frames'] == 2 and entry['pixels'] == 2 * 480 * 360
    assert entry['label_agreement'] == 1.0 and entry['logits_max_abs_difference'] == 0.0
    assert entry['miou_flushed'] == entry['miou_as_loaded'] > 0


def _copy_half(network: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(network).half()
