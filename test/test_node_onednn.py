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

"""The segmenter on backend onednn, its own process over real DDS: the plan's labels."""

from pathlib import Path
from typing import Optional

import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from ros_helpers import (diagnostic_values, image_array, NodeProcess, Probe, Recorder,
                         send_until_answered, sender, SMALL_CAMERA_SIZE, SMALL_NODE,
                         small_node_fixtures)

from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.runtime.onednn_plan import onednn_wheels_published
from espnet_ros.streaming.diagnostics import RUNNER_KEY

pytestmark = pytest.mark.skipif(not onednn_wheels_published(),
                                reason='PyPI has oneDNN wheels for x86-64 Linux only')

NAMESPACE = '/onednn'
NODE = f'{NAMESPACE}/segmenter'
MODEL = 'espnet_p2q8_cityscapes'  # ESPNet with its decoder: the plan's whole layout
NETWORK_SIZE = (SMALL_NODE['input_width'], SMALL_NODE['input_height'])
PARAMETERS = {**SMALL_NODE, 'model': MODEL, 'backend': 'onednn', 'reliability': 'reliable'}
# The same network in another order of sums: a near-tie may flip.
AGREEMENT = 0.999


segmenter, camera, labels = small_node_fixtures(NAMESPACE, PARAMETERS)


def test_node_publishes_the_plans_labels(probe: Probe, segmenter: NodeProcess, camera,
                                         labels: Recorder, street_bgr: np.ndarray,
                                         weights_dir: Path) -> None:
    """Labels of a street frame as eager fp32 gives them; the diagnostics name the plan."""
    rgb = np.ascontiguousarray(cv2.resize(street_bgr, SMALL_CAMERA_SIZE)[..., ::-1])
    diagnostics = probe.record(DiagnosticArray, '/diagnostics')

    def runner() -> Optional[str]:
        for _, message in reversed(diagnostics.messages):
            values = diagnostic_values(message, NODE)
            if values is not None:
                return values[RUNNER_KEY]
        return None

    try:
        send_until_answered(probe, sender(camera, rgb), {'labels': labels})
        published = image_array(labels.messages[-1][1])
        engine = SegmentationEngine.from_pretrained(MODEL, weights_dir=weights_dir,
                                                    input_size=NETWORK_SIZE, device='cpu',
                                                    precision='fp32', backend='torch')
        expected = engine.segment(rgb).labels
        assert float((published == expected).mean()) >= AGREEMENT
        assert probe.spin_until(runner, 30.0, 'the diagnostics') == 'onednn (fp32)'
    finally:
        probe.forget([diagnostics])
