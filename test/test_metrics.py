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


"""Confusion matrix and IoU, including how each protocol treats the void class."""

import numpy as np
import pytest

from espnet_ros.imaging.metrics import ConfusionMatrix, mean_iou, protocol_ignore

VOID = 2


def test_iou_of_a_hand_computed_case() -> None:
    truth = np.array([[0, 0, 1, 1]])
    prediction = np.array([[0, 1, 1, 1]])
    matrix = ConfusionMatrix(2)
    matrix.update(prediction, truth)
    assert matrix.iou() == pytest.approx([1 / 2, 2 / 3])
    assert mean_iou(matrix, None) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert matrix.pixel_accuracy() == pytest.approx(3 / 4)


def test_protocols_differ_exactly_on_void_pixels() -> None:
    truth = np.array([[0, 1, VOID, VOID]])
    prediction = np.array([[0, 1, 0, VOID]])
    scores = {}
    for protocol in ('ignore-void', 'all-outputs'):
        matrix = ConfusionMatrix(3)
        matrix.update(prediction, truth, ignore=protocol_ignore(protocol, VOID))
        scores[protocol] = mean_iou(matrix, VOID)
    assert scores['ignore-void'] == pytest.approx(1.0)
    # The void pixel predicted as class 0 is a false positive of class 0: IoU 1/2.
    assert scores['all-outputs'] == pytest.approx((1 / 2 + 1) / 2)


def test_absent_classes_are_not_averaged_and_sizes_must_match() -> None:
    matrix = ConfusionMatrix(3)
    matrix.update(np.zeros((2, 2), int), np.zeros((2, 2), int))
    assert np.isnan(matrix.iou()[1]) and mean_iou(matrix, None) == 1.0
    with pytest.raises(ValueError, match='differ in size'):
        matrix.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match='protocol'):
        protocol_ignore('sometimes', VOID)
