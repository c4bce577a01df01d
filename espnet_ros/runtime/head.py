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
The labels-and-confidence head: what follows the network, written once.

The network's N x C x h x w logits are upsampled bilinearly to the input's H x W (as the
authors did), the label of a pixel is its first largest class (uint8) and its confidence the
winning class's softmax probability (float32). Every runner (eager, compiled in the
process, ONNX Runtime) and the compiled graphs of the cache end in these functions, so that
they all compute the same thing. The compiled graphs (:class:`Labels`,
:class:`LabelsAndConfidence`) take ESPNet's last layer, a 2x2 stride-2 transposed
convolution, into the head (:mod:`espnet_ros.runtime.phase_labels`): on the CPU as fused
operators that never write the class scores out, elsewhere as class planes per output phase.
"""

from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn

from espnet_ros.runtime.phase_labels import (phase_labels, phase_labels_and_confidence,
                                             PHASES, planes_labels,
                                             planes_labels_and_confidence)
from espnet_ros.runtime.postprocess import class_labels, confidence, upsample_logits


def labels(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Return N x H x W uint8 labels of N x C x h x w ``logits`` at ``size`` (H, W)."""
    return class_labels(upsample_logits(logits, size))


def labels_and_confidence(logits: torch.Tensor, size: Sequence[int]
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the labels and confidence of N x C x h x w ``logits`` at ``size`` (H, W)."""
    upsampled = upsample_logits(logits, size)
    return class_labels(upsampled), confidence(upsampled)


def upsampling_classifier(network: nn.Module
                          ) -> Optional[tuple[Callable[[torch.Tensor], torch.Tensor],
                                              nn.ConvTranspose2d]]:
    """
    Return the network's features and last layer if that is a 2x2 stride-2 transposed conv.

    ESPNet ends so (``classifier_input`` and ``classifier``); a network that does not, or
    whose last layer is anything else, gives None and its head takes the logits.
    """
    features = getattr(network, 'classifier_input', None)
    last = getattr(network, 'classifier', None)
    if features is None or type(last) is not nn.ConvTranspose2d:
        return None
    plain = (last.kernel_size == (PHASES, PHASES) and last.stride == (PHASES, PHASES)
             and last.padding == (0, 0) and last.output_padding == (0, 0)
             and last.dilation == (1, 1) and last.groups == 1)
    return (features, last) if plain else None


def _through_head(network: nn.Module, batch: torch.Tensor, *, with_confidence: bool
                  ) -> Union[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Return the labels (and confidence) of ``batch``, by phases where the last layer allows."""
    split = upsampling_classifier(network)
    if split is None:
        logits, size = network(batch), batch.shape[-2:]
        return labels_and_confidence(logits, size) if with_confidence else labels(logits, size)
    # ESPNet takes only sizes that are multiples of 8, so the phases fill the input's grid.
    features, last = split[0](batch), split[1]
    if batch.device.type == 'cpu':
        # The kernel sums in float32: a bf16 network's last layer gains precision, no speed.
        bias = None if last.bias is None else last.bias.float()
        fused = phase_labels_and_confidence if with_confidence else phase_labels
        return fused(features.float(), last.weight.float(), bias)
    by_planes = planes_labels_and_confidence if with_confidence else planes_labels
    return by_planes(features, last.weight, last.bias)


class Labels(nn.Module):
    """
    A network with the labels head: N x 3 x H x W float input -> N x H x W uint8 labels.

    The compiled graph of the frames that need no confidence (the node's default): it
    skips the softmax over every class's score that confidence takes (docs/performance.md).
    """

    def __init__(self, network: nn.Module) -> None:
        """Wrap a prepared (folded, cast) network."""
        super().__init__()
        self.network = network

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Return the labels of ``batch`` at its resolution."""
        return _through_head(self.network, batch, with_confidence=False)


class LabelsAndConfidence(nn.Module):
    """
    A network with the labels-and-confidence head.

    N x 3 x H x W float input -> (N x H x W uint8 labels, N x H x W float32 confidence), so
    the full-size logits are never written out.
    """

    def __init__(self, network: nn.Module) -> None:
        """Wrap a prepared (folded, cast) network."""
        super().__init__()
        self.network = network

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the labels and confidence of ``batch`` at its resolution."""
        return _through_head(self.network, batch, with_confidence=True)


# The graphs of a compiled package, by name; a frame runs the one it needs
# (graph_cache.PackagedGraph).
LABELS_GRAPH = 'labels'
CONFIDENCE_GRAPH = 'labels_and_confidence'
GRAPH_HEADS = {LABELS_GRAPH: Labels, CONFIDENCE_GRAPH: LabelsAndConfidence}
