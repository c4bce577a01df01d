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


"""Accuracy regression: CamVid val mIoU of espnet_p2q8_camvid stays where we measured it."""

import json
from pathlib import Path

import pytest

from espnet_ros.cli import main as cli_main

# Measured with `espnet-ros eval` on the 101 CamVid val frames (README, Models and accuracy).
MEASURED_MIOU = {'ignore-void': 0.7010, 'all-outputs': 0.6868}
TOLERANCE = 0.005


@pytest.mark.parametrize('protocol', sorted(MEASURED_MIOU))
def test_camvid_val_miou_holds(protocol: str, camvid_dir: Path, tmp_path: Path,
                               capsys) -> None:
    report = tmp_path / 'camvid.json'
    status = cli_main(['eval', '--model', 'espnet_p2q8_camvid', '--device', 'cpu',
                       '--images', str(camvid_dir / 'val'),
                       '--labels', str(camvid_dir / 'valannot'), '--protocol', protocol,
                       '--json', str(report)])
    assert status == 0
    scores = json.loads(report.read_text())
    assert scores['images'] == 101 and scores['protocol'] == protocol
    assert abs(scores['miou'] - MEASURED_MIOU[protocol]) <= TOLERANCE, scores['miou']
    assert len(scores['per_class_iou']) == 11 and 'unlabelled' not in scores['per_class_iou']
    assert (tmp_path / 'camvid_confusion.png').stat().st_size > 0
    assert f'{100 * scores["miou"]:6.2f}' in capsys.readouterr().out
