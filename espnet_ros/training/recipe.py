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
The training recipe: the ESPNet authors' defaults, and what fine-tuning changes.

Source: github.com/sacmehta/ESPNet ``train/main.py`` and ``train/loadData.py`` (Mehta et
al., ECCV 2018): cross-entropy weighted per class by ``1 / ln(1.10 + p_c)`` (the ERFNet
weighting, ``p_c`` the class's share of the training pixels); Adam with learning rate
5e-4, betas (0.9, 0.999), eps 1e-8 and weight decay 5e-4; the learning rate halved every
100 of 300 epochs; training at 0.5x to 1.5x the base resolution with random crops and
horizontal flips; batch 6 for ESPNet.

For fine-tuning (changes, and why):

* the layers whose shapes depend on the class count start fresh and learn ten times faster
  than the kept ones, which already fit the task and must not be disturbed while the new
  head is still random;
* the authors' halving every third of the run is kept, but over this run's length (epochs,
  or the time budget) instead of their 300 epochs;
* void pixels are left out of the loss (the authors trained void as a class): scoring
  ignores them, so learning them only takes capacity from the real classes.
"""

from dataclasses import dataclass
import math

import numpy as np

from espnet_ros.training.data import Augmentation


@dataclass(frozen=True)
class Recipe:
    """Optimiser, schedule, loss weighting and augmentation of a fine-tune."""

    learning_rate: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 5e-4
    new_layer_lr_factor: float = 10.0
    lr_halvings: int = 2        # the authors halve at epochs 100 and 200 of 300 ...
    lr_steps: int = 3           # ... i.e. at each third of the run
    class_weight_norm: float = 1.10  # ERFNet's c in 1 / ln(c + p_class)
    augmentation: Augmentation = Augmentation(scale_range=(0.5, 1.5))
    batch: int = 6

    def lr_factor(self, progress: float) -> float:
        """Return the learning-rate multiplier at ``progress`` (0..1) through the run."""
        step = min(self.lr_halvings, math.floor(max(0.0, progress) * self.lr_steps))
        return 0.5 ** step

    def class_weights(self, histogram: np.ndarray) -> np.ndarray:
        """Return the ERFNet weights ``1 / ln(c + p_class)`` of a pixel histogram."""
        total = histogram.sum()
        share = histogram / total if total else np.zeros(len(histogram))
        return (1.0 / np.log(self.class_weight_norm + share)).astype(np.float32)


AUTHORS_RECIPE = Recipe()
