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
A label map over the compiled graph of the cache: the graph knows nothing of the map.

The session's graph (the default model at 64x32, built once without a map) serves the
labels; the engine's lookup table must group them after it, so that a map never meets a
graph that ignores it. Grouped confidence needs every class's probability and comes from
the runner's logits: it must still be the members' summed probability.
"""

from pathlib import Path
from typing import Iterator

from cache_helpers import engine_over, private_copy
import cv2
import numpy as np
import pytest

from espnet_ros.runtime.graph_switch import SwitchState
from espnet_ros.zoo import DEFAULT_MODEL
from espnet_ros.zoo.label_map import load_for_dataset
from espnet_ros.zoo.registry import get_spec

GROUPS_FILE = Path(__file__).resolve().parents[1] / 'config' / 'cityscapes_groups.yaml'
SWITCH_TIMEOUT_S = 600.0  # a wait, not a figure: loading and checking the cached graph
PROBABILITY_TOLERANCE = 1e-5


@pytest.fixture()
def cache(compiled_cache, tmp_path: Path) -> Iterator[Path]:
    """Return a private copy of the session's compiled graph."""
    yield from private_copy(compiled_cache, tmp_path)


def test_compiled_labels_go_through_the_map(compiled_cache, cache: Path, weights_dir: Path,
                                            street_bgr: np.ndarray) -> None:
    log: list = []
    engine = engine_over(weights_dir, cache, 'cached', log, compiled_cache.size)
    try:
        assert engine.graph_switch.wait(SWITCH_TIMEOUT_S) == SwitchState.COMPILED, log
        assert engine.compiled
        image = np.ascontiguousarray(cv2.resize(street_bgr, compiled_cache.size)[..., ::-1])
        plain = engine.segment(image).labels
        label_map = load_for_dataset(GROUPS_FILE, get_spec(DEFAULT_MODEL).dataset)
        engine.use_label_map(label_map)
        grouped = engine.segment(image).labels
        assert engine.describe_runner().startswith('compiled graph')
        np.testing.assert_array_equal(grouped, label_map.lookup()[plain])
        with_confidence = engine.segment(image, with_confidence=True)
        batch = engine.preprocess([image])
        probabilities = engine.infer(batch).float().softmax(1)[0].numpy()
    finally:
        engine.close()
    lookup = label_map.lookup()
    labels = with_confidence.labels
    np.testing.assert_array_equal(labels, lookup[probabilities.argmax(0)])
    expected = np.zeros(labels.shape, np.float32)
    for published in np.unique(labels):
        where = labels == published
        expected[where] = probabilities[lookup == published].sum(0)[where]
    assert np.abs(with_confidence.confidence - expected).max() <= PROBABILITY_TOLERANCE
