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
they all compute the same thing.
"""

from typing import Sequence

import torch
from torch import nn

from espnet_ros.runtime.postprocess import class_labels, upsample_logits


def labels(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Return N x H x W uint8 labels of N x C x h x w ``logits`` at ``size`` (H, W)."""
    return class_labels(upsample_logits(logits, size))


def confidence(logits: torch.Tensor) -> torch.Tensor:
    """Return N x H x W float32: each pixel's largest softmax probability over the classes."""
    return logits.float().softmax(1).amax(1)


def labels_and_confidence(logits: torch.Tensor, size: Sequence[int]
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the labels and confidence of N x C x h x w ``logits`` at ``size`` (H, W)."""
    upsampled = upsample_logits(logits, size)
    return class_labels(upsampled), confidence(upsampled)


class Labels(nn.Module):
    """
    A network with the labels head: N x 3 x H x W float input -> N x H x W uint8 labels.

    The compiled graph of the frames that need no confidence (the node's default): the
    softmax that confidence takes costs about a sixth of the frame on a CPU
    (docs/performance.md).
    """

    def __init__(self, network: nn.Module) -> None:
        """Wrap a prepared (folded, cast) network."""
        super().__init__()
        self.network = network

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Return the labels of ``batch`` at its resolution."""
        return labels(self.network(batch), batch.shape[-2:])


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
        return labels_and_confidence(self.network(batch), batch.shape[-2:])


# The graphs of a compiled package, by name; a frame runs the one it needs
# (graph_cache.PackagedGraph).
LABELS_GRAPH = 'labels'
CONFIDENCE_GRAPH = 'labels_and_confidence'
GRAPH_HEADS = {LABELS_GRAPH: Labels, CONFIDENCE_GRAPH: LabelsAndConfidence}
