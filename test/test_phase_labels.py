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

"""The fused labels head: its C kernel against the transposed convolution, and its fallback."""

from typing import Callable, Optional

import pytest
import torch
from torch import nn

from espnet_ros.runtime import head, phase_labels
from espnet_ros.runtime.engine import EngineConfig, SegmentationEngine
from espnet_ros.runtime.graph_builder import prepare_network
from espnet_ros.runtime.native import BuiltOnce, find_compiler
from espnet_ros.runtime.phase_labels import (kernel_unavailable, load_kernel, planes_labels,
                                             planes_labels_and_confidence)
from espnet_ros.runtime.postprocess import confidence
from espnet_ros.runtime.runners import TorchRunner
from espnet_ros.zoo.registry import get_spec

Pretrained = Callable[[str], nn.Module]  # the conftest fixture: registry name -> network
has_compiler = pytest.mark.skipif(find_compiler('CC', phase_labels.COMPILERS)[0] is None,
                                  reason='no C compiler on this machine')


def transposed_argmax(features: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor) -> torch.Tensor:
    """Return the labels as the authors' layer and argmax give them."""
    logits = nn.functional.conv_transpose2d(features, weight, bias, stride=2)
    return logits.argmax(1).to(torch.uint8)


def transposed_confidence(features: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor) -> torch.Tensor:
    """Return the winning class's softmax probability of the authors' layer's logits."""
    return confidence(nn.functional.conv_transpose2d(features, weight, bias, stride=2))


def integer_inputs(images: int, channels: int, classes: int, height: int, width: int,
                   seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return small-integer features, weights and bias: exact sums in any order, many ties."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randint(-2, 3, (images, channels, height, width), generator=generator)
    weight = torch.randint(-2, 3, (channels, classes, 2, 2), generator=generator)
    bias = torch.randint(-2, 3, (classes,), generator=generator)
    return features.float(), weight.float(), bias.float()


@has_compiler
def test_the_kernel_builds_on_a_machine_with_a_compiler() -> None:
    assert load_kernel() is None and kernel_unavailable() is None


@has_compiler
@pytest.mark.parametrize('images,channels,classes,height,width', [
    (1, 20, 20, 16, 32),   # Cityscapes' 20 classes: whole blocks and class groups
    (2, 11, 11, 3, 5),     # CamVid's 11: a class left over, 15 pixels (less than a block)
    (3, 7, 1, 4, 9),       # one class: every label 0
    (1, 256, 256, 2, 17),  # the most the kernel takes
])
def test_the_kernel_gives_argmax_of_the_transposed_convolution_ties_included(
        images: int, channels: int, classes: int, height: int, width: int) -> None:
    features, weight, bias = integer_inputs(images, channels, classes, height, width, seed=1)
    expected = transposed_argmax(features, weight, bias)
    for layout in (torch.contiguous_format, torch.channels_last):
        laid_out = features.contiguous(memory_format=layout)
        found = phase_labels.phase_labels(laid_out, weight, bias)
        assert found.dtype == torch.uint8
        assert torch.equal(found, expected)
        both = phase_labels.phase_labels_and_confidence(laid_out, weight, bias)
        assert torch.equal(both[0], expected)
        assert both[1].dtype == torch.float32
        torch.testing.assert_close(both[1], transposed_confidence(features, weight, bias),
                                   rtol=1e-5, atol=1e-6)


@has_compiler
def test_the_kernel_on_a_real_network_s_features(pretrained: Pretrained) -> None:
    network = pretrained('espnet_p2q8_cityscapes').eval()
    generator = torch.Generator().manual_seed(2)
    batch = torch.rand(2, 3, 64, 128, generator=generator)
    with torch.no_grad():
        features = network.classifier_input(batch)
        last = network.classifier
        found = phase_labels.phase_labels(features, last.weight, last.bias)
        both = phase_labels.phase_labels_and_confidence(features, last.weight, last.bias)
        expected = transposed_argmax(features, last.weight, last.bias)
        expected_confidence = transposed_confidence(features, last.weight, last.bias)
    # The same products summed in another order: only near-ties may land elsewhere.
    assert (found == expected).float().mean() > 0.9999
    assert torch.equal(both[0], found)
    torch.testing.assert_close(both[1], expected_confidence, rtol=1e-5, atol=1e-6)


@has_compiler
def test_confidence_of_scores_far_apart_is_one_and_of_equal_scores_a_share() -> None:
    features = torch.ones(1, 1, 2, 3)
    weight = torch.zeros(1, 4, 2, 2)
    weight[0, 2] = 200.0  # class 2 wins by 200: the others' exp(-200) is far below float's range
    labels, found = phase_labels.phase_labels_and_confidence(features, weight, None)
    assert torch.equal(labels, torch.full((1, 4, 6), 2, dtype=torch.uint8))
    assert torch.equal(found, torch.ones(1, 4, 6))
    labels, found = phase_labels.phase_labels_and_confidence(features, weight * 0, None)
    assert torch.equal(labels, torch.zeros(1, 4, 6, dtype=torch.uint8))  # the first of ties
    torch.testing.assert_close(found, torch.full((1, 4, 6), 0.25))


@pytest.mark.parametrize('compiler,reason', [
    ('/nonexistent/cc', '$CC names /nonexistent/cc, which is not found'),
    ('false', 'the C kernel did not compile'),
])
def test_without_a_working_compiler_the_planes_give_the_same_labels(
        compiler: str, reason: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('CC', compiler)
    monkeypatch.setattr(phase_labels, '_KERNEL', BuiltOnce(phase_labels._build))
    assert kernel_unavailable() is None  # asking does not build it
    features, weight, bias = integer_inputs(2, 11, 11, 3, 5, seed=3)
    found = phase_labels.phase_labels(features, weight, bias)
    both = phase_labels.phase_labels_and_confidence(features, weight, bias)
    assert reason in kernel_unavailable()
    assert torch.equal(found, transposed_argmax(features, weight, bias))
    assert torch.equal(both[0], found)
    torch.testing.assert_close(both[1], transposed_confidence(features, weight, bias))


class _NoKernel:
    """A kernel slot that fails the test if anything asks it for the kernel."""

    reason = None

    def get(self) -> None:
        raise AssertionError('the C kernel was asked for inputs it does not take')


def test_inputs_the_kernel_does_not_take_go_through_the_planes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phase_labels, '_KERNEL', _NoKernel())
    features, weight, bias = integer_inputs(1, 300, 3, 2, 4, seed=4)  # over 256 channels
    assert torch.equal(phase_labels.phase_labels(features, weight, bias),
                       transposed_argmax(features, weight, bias))
    doubles = [tensor.double() for tensor in integer_inputs(1, 4, 3, 2, 4, seed=5)]
    assert torch.equal(phase_labels.phase_labels(*doubles), transposed_argmax(*doubles))
    assert torch.equal(planes_labels(*doubles), transposed_argmax(*doubles))
    labels, found = planes_labels_and_confidence(*doubles)
    assert torch.equal(labels, transposed_argmax(*doubles))
    torch.testing.assert_close(found, transposed_confidence(*doubles).float())


class _CountingKernel:
    """The process's kernel slot, counting what asks it for the kernel."""

    def __init__(self, slot: BuiltOnce) -> None:
        self.slot = slot
        self.asked = 0

    @property
    def reason(self) -> Optional[str]:
        return self.slot.reason

    def get(self) -> Callable:
        self.asked += 1
        return self.slot.get()


@has_compiler
def test_eager_runners_on_the_cpu_take_their_labels_from_the_kernel(
        pretrained: Pretrained, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = _CountingKernel(phase_labels._KERNEL)
    monkeypatch.setattr(phase_labels, '_KERNEL', counting)
    network = pretrained('espnet_p2q8_cityscapes')
    cpu = torch.device('cpu')
    fused = TorchRunner(network, device=cpu, dtype=torch.float32)
    plain = TorchRunner(network, device=cpu, dtype=torch.float32, fused_head=False)
    batch = torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(6))
    asked = counting.asked
    labels = fused.labels(batch)
    both = fused.labels_and_confidence(batch)
    assert counting.asked == asked + 2
    expected = plain.labels(batch)
    expected_both = plain.labels_and_confidence(batch)
    assert counting.asked == asked + 2  # the arg-max of the logits does not ask
    # The same products summed in another order: only near-ties may land elsewhere.
    assert (labels == expected).float().mean() > 0.9999
    assert torch.equal(both[0], labels) and torch.equal(expected_both[0], expected)
    torch.testing.assert_close(both[1], expected_both[1], rtol=1e-5, atol=1e-6)


def test_without_a_compiler_eager_labels_come_from_the_logits_and_the_log_says_why(
        pretrained: Pretrained, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('CC', 'false')
    monkeypatch.setattr(phase_labels, '_KERNEL', BuiltOnce(phase_labels._build))
    messages: list[str] = []
    engine = SegmentationEngine(get_spec('espnet_p2q8_cityscapes'),
                                pretrained('espnet_p2q8_cityscapes'),
                                EngineConfig(input_size=(128, 64), backend='torch'),
                                log=messages.append)
    assert any(message.startswith('eager labels without the C kernel') and
               'the C kernel did not compile' in message for message in messages), messages
    plain = TorchRunner(pretrained('espnet_p2q8_cityscapes'), device=torch.device('cpu'),
                        dtype=torch.float32, fused_head=False)
    batch = torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(7))
    assert torch.equal(engine.runner.labels(batch), plain.labels(batch))


def test_the_graphs_call_the_fused_heads_on_the_cpu(
        pretrained: Pretrained) -> None:
    network = prepare_network(pretrained('espnet_p2q8_cityscapes'), 'fp32')
    example = torch.zeros(1, 3, 64, 128)

    def operators(module: nn.Module) -> set:
        with torch.no_grad():
            exported = torch.export.export(module.eval(), (example,))
        return {node.target for node in exported.graph.nodes if node.op == 'call_function'}

    labels = operators(head.Labels(network))
    both = operators(head.LabelsAndConfidence(network))
    assert torch.ops.espnet_ros.phase_labels.default in labels
    assert torch.ops.espnet_ros.phase_labels_and_confidence.default in both
    # Neither computes the class scores as planes (a matrix product) any more.
    assert torch.ops.aten.mm.default not in labels | both
