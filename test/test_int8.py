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

"""Precision int8: static quantization of the ONNX export, calibrated on real frames."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from espnet_ros.cli import main as cli_main
from espnet_ros.runtime.engine import EngineConfig, EngineConfigError, SegmentationEngine
from espnet_ros.zoo.registry import get_spec, load

MODEL = 'espnet_p2q3_cityscapes'
SIZE = (256, 128)
# int8 rounding moves a few labels at object borders; most must stay.
MIN_AGREEMENT = 0.85


def crops(image: np.ndarray, count: int) -> list[np.ndarray]:
    """Return ``count`` RGB crops of a BGR image, shifted across it (calibration frames)."""
    height, width = image.shape[:2]
    step = (width // 2) // count
    return [cv2.cvtColor(image[:, index * step:index * step + width // 2], cv2.COLOR_BGR2RGB)
            for index in range(count)]


def test_int8_agrees_with_fp32_on_a_real_frame(weights_dir: Path,
                                               street_bgr: np.ndarray) -> None:
    spec, network = get_spec(MODEL), load(MODEL, weights_dir)
    fp32 = SegmentationEngine(spec, network, EngineConfig(input_size=SIZE, backend='onnxruntime'))
    int8 = SegmentationEngine(spec, network, EngineConfig(input_size=SIZE, backend='onnxruntime',
                                                          precision='int8'),
                              calibration=crops(street_bgr, 4))
    assert int8.precision == 'int8' and int8.backend == 'onnxruntime'
    expected = fp32.segment(street_bgr, order='bgr').labels
    got = int8.segment(street_bgr, order='bgr').labels
    assert got.shape == expected.shape and got.dtype == np.uint8
    agreement = float((got == expected).mean())
    assert MIN_AGREEMENT <= agreement < 1.0, agreement


@pytest.mark.parametrize('backend,calibration,reason', [
    ('torch', True, 'backend onnxruntime'),
    ('onnxruntime', False, 'needs calibration frames'),
])
def test_int8_refuses_what_it_cannot_do(weights_dir: Path, street_bgr: np.ndarray,
                                        backend: str, calibration: bool, reason: str) -> None:
    spec = get_spec(MODEL)
    with pytest.raises(EngineConfigError, match=reason):
        SegmentationEngine(spec, spec.build(),
                           EngineConfig(input_size=SIZE, backend=backend, precision='int8'),
                           calibration=crops(street_bgr, 2) if calibration else None)


def test_eval_command_takes_calibration_frames(tmp_path: Path, weights_dir: Path,
                                               cityscapes_image: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    labels = tmp_path / 'labels'
    labels.mkdir()
    image = cv2.imread(str(cityscapes_image))
    cv2.imwrite(str(labels / cityscapes_image.name), np.zeros(image.shape[:2], np.uint8))
    args = ['eval', '--model', MODEL, '--size', '256x128', '--weights-dir', str(weights_dir),
            '--images', str(cityscapes_image.parent), '--labels', str(labels),
            '--backend', 'onnxruntime', '--precision', 'int8',
            '--calibration', str(cityscapes_image.parent), '--json', str(tmp_path / 's.json')]
    assert cli_main(args) == 0
    assert '"precision": "int8"' in (tmp_path / 's.json').read_text()
