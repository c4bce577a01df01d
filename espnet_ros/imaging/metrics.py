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
Segmentation accuracy: a confusion matrix and IoU under an explicit void protocol.

Two protocols, because published figures differ in how they treat the void class:

``ignore-void``
    Pixels labelled void in the ground truth are left out; the mean is over the real
    classes. This is the usual benchmark protocol.
``all-outputs``
    The confusion matrix spans every network output, void included, so a void pixel
    predicted as class c counts against c. The mean is still over the real classes. This is
    how the ESPNet authors scored CamVid (their 12-output confusion matrix).
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

PROTOCOLS = ('ignore-void', 'all-outputs')


@dataclass
class ConfusionMatrix:
    """Counts of (ground truth, prediction) pixel pairs over ``num_classes`` labels."""

    num_classes: int
    counts: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        """Start from zero counts."""
        if self.counts is None:
            self.counts = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, prediction: np.ndarray, truth: np.ndarray,
               ignore: Optional[int] = None) -> None:
        """Add one frame; truth pixels equal to ``ignore`` or out of range are skipped."""
        if prediction.shape != truth.shape:
            raise ValueError(f'prediction {prediction.shape} and ground truth {truth.shape} '
                             'differ in size')
        truth = truth.reshape(-1).astype(np.int64)
        prediction = prediction.reshape(-1).astype(np.int64)
        keep = (truth >= 0) & (truth < self.num_classes)
        if ignore is not None:
            keep &= truth != ignore
        pairs = truth[keep] * self.num_classes + prediction[keep]
        self.counts += np.bincount(pairs, minlength=self.num_classes ** 2).reshape(
            self.num_classes, self.num_classes)

    def iou(self) -> np.ndarray:
        """Return per-class IoU; NaN for a class absent from both truth and prediction."""
        true_positive = np.diag(self.counts).astype(np.float64)
        union = self.counts.sum(0) + self.counts.sum(1) - true_positive
        with np.errstate(divide='ignore', invalid='ignore'):
            return np.where(union > 0, true_positive / union, np.nan)

    def pixel_accuracy(self) -> float:
        """Return the fraction of counted pixels predicted correctly."""
        total = self.counts.sum()
        return float(np.diag(self.counts).sum() / total) if total else float('nan')


def scored_classes(num_classes: int, void_class: Optional[int]) -> list[int]:
    """Return the classes a mean IoU averages over: all but the void class."""
    return [c for c in range(num_classes) if c != void_class]


def mean_iou(matrix: ConfusionMatrix, void_class: Optional[int]) -> float:
    """Return the mean IoU over the non-void classes, skipping classes never seen."""
    iou = matrix.iou()[scored_classes(matrix.num_classes, void_class)]
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float('nan')


def protocol_ignore(protocol: str, void_class: Optional[int]) -> Optional[int]:
    """Return the ground-truth label to skip under ``protocol``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f'protocol {protocol!r} is not one of {PROTOCOLS}')
    return void_class if protocol == 'ignore-void' else None
