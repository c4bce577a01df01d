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
A label map applied on the engine's device, at the network's resolution.

The labels of a pixel are its model class (the first largest logit, as the head says)
published through one lookup table: ``lookup[class]``. Its confidence is the probability of
that published class, the sum of the softmax probabilities of its members (of the classes
published as the ignore value, for an ignored pixel): one C -> R matrix product over the
class axis, R being the published classes plus one row for the ignored ones. Both run on the
network's output before it is resized to the camera's resolution, so they cost one small
pass over the network-sized map (``espnet-ros bench-groups`` measures it).

The compiled graph of the cache is built without a map: labels it returns go through the
lookup table outside it; grouped confidence needs every class's probability, which the
graph does not return, so frames that want it run the runner's logits through
:func:`grouped_labels_and_confidence` (see :meth:`SegmentationEngine.labels_and_confidence`).
"""

from typing import Sequence

import torch

from espnet_ros.runtime.postprocess import class_labels, upsample_logits
from espnet_ros.zoo.label_map import LabelMap


class DeviceLabelMap:
    """A :class:`~espnet_ros.zoo.label_map.LabelMap`'s tables on one device."""

    def __init__(self, label_map: LabelMap, device: torch.device) -> None:
        """Put the lookup table and the C -> R membership matrix of ``label_map`` on ``device``."""
        self.label_map = label_map
        lookup = label_map.lookup()
        classes = len(lookup)
        groups = len(label_map.groups)
        # Row of each class in the membership matrix: its group, or the last row if ignored.
        rows = torch.tensor([int(value) if value < groups else groups for value in lookup],
                            dtype=torch.long)
        membership = torch.zeros(groups + 1, classes)
        membership[rows, torch.arange(classes)] = 1.0
        self.lookup = torch.from_numpy(lookup).to(device)
        self.rows = rows.to(device)
        self.membership = membership.to(device)

    def labels(self, class_ids: torch.Tensor) -> torch.Tensor:
        """Return the published uint8 labels of N x H x W uint8 model class ids."""
        return self.lookup[class_ids.long()]


def grouped_labels_and_confidence(logits: torch.Tensor, size: Sequence[int],
                                  groups: DeviceLabelMap) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Return N x H x W published uint8 labels and float32 group probabilities at ``size``.

    ``logits``: N x C x h x w, upsampled bilinearly to ``size`` (H, W) first, as the head does.
    """
    upsampled = upsample_logits(logits, size)
    class_ids = class_labels(upsampled)
    probabilities = upsampled.float().softmax(1)
    # N x R x H x W: each published class's probability (the ignored classes' last).
    grouped = torch.einsum('rc,nchw->nrhw', groups.membership, probabilities)
    rows = groups.rows[class_ids.long()].unsqueeze(1)
    return groups.labels(class_ids), grouped.gather(1, rows).squeeze(1)
