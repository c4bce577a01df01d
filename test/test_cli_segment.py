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


"""``espnet-ros segment`` writes labels, colour and overlay PNGs that agree with the engine."""

from pathlib import Path

import cv2
import numpy as np

from espnet_ros.cli import main as cli_main
from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.zoo.registry import get_spec


def test_segment_writes_three_pngs_per_image(tmp_path: Path, camvid_dir: Path) -> None:
    frames = sorted((camvid_dir / 'val').iterdir())[:2]
    for frame in frames:
        (tmp_path / 'in').mkdir(exist_ok=True)
        (tmp_path / 'in' / frame.name).symlink_to(frame)
    args = ['segment', '--model', 'espnet_p2q8_camvid', '--device', 'cpu',
            str(tmp_path / 'in'), '--out', str(tmp_path / 'out')]
    assert cli_main(args) == 0
    engine = SegmentationEngine.from_pretrained('espnet_p2q8_camvid', device='cpu')
    palette = get_spec('espnet_p2q8_camvid').dataset.palette
    for frame in frames:
        labels = cv2.imread(str(tmp_path / 'out' / f'{frame.stem}_labels.png'),
                            cv2.IMREAD_UNCHANGED)
        expected = engine.segment(cv2.imread(str(frame)), order='bgr').labels
        assert np.array_equal(labels, expected)
        color = cv2.imread(str(tmp_path / 'out' / f'{frame.stem}_color.png'))[..., ::-1]
        assert np.array_equal(color, palette[labels])
        overlay = cv2.imread(str(tmp_path / 'out' / f'{frame.stem}_overlay.png'))
        assert overlay.shape == labels.shape + (3,)


def test_segment_reports_a_missing_input(tmp_path: Path, capsys) -> None:
    assert cli_main(['segment', str(tmp_path / 'nothing.png'), '--out', str(tmp_path)]) == 2
    assert 'nothing.png' in capsys.readouterr().err
