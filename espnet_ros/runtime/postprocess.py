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

"""Logits to labels: bilinear upsampling to the input grid, the per-pixel arg-max, confidence."""

from typing import Sequence

import torch
import torch.nn.functional as F


def upsample_logits(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """
    Return N x C x H x W logits at ``size`` (H, W): bilinear, as the authors did.

    Only ESPNet-C and ESPNetv2 need it: they predict at 1/8 and 1/4 of the input.
    """
    if logits.shape[-2:] == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode='bilinear', align_corners=False)


def class_labels(logits: torch.Tensor) -> torch.Tensor:
    """
    Return N x H x W uint8 labels: the index of each pixel's first largest logit.

    Inductor vectorises a running maximum over the class planes across pixels, but not
    ``argmax`` over channels-last logits. Eager PyTorch's ``max`` over the classes gives the
    same first index as ``argmax`` in a fraction of its time (on NCHW logits argmax walks the
    strided class axis: 27 against 3.7 ms at 20 x 512 x 256 here); it is also how the authors
    take their labels (timings in docs/performance.md).
    """
    if not torch.compiler.is_compiling():
        return logits.max(1).indices.to(torch.uint8)
    best = logits[:, 0]
    # The running index is kept in float32, a vector as wide as the scores' (exact up to 2**24
    # classes): inductor's uint8 selects took twice as long over class planes.
    labels = torch.zeros_like(best, dtype=torch.float32)
    for index in range(1, logits.shape[1]):
        scores = logits[:, index]
        labels = torch.where(scores > best, float(index), labels)
        best = torch.maximum(best, scores)
    return labels.to(torch.uint8)


def confidence(logits: torch.Tensor) -> torch.Tensor:
    """Return N x H x W float32: each pixel's largest softmax probability over the classes."""
    return logits.float().softmax(1).amax(1)
