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
``espnet-ros segment`` and ``eval`` on bad inputs and outputs.

A file that cannot be read or written is named in one line, the rest of a batch goes on and
the exit status says something failed; nothing is overwritten or silently left out, and
the scores are valid JSON.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from espnet_ros.cli import main as cli_main
from espnet_ros.zoo.registry import get_spec

MODEL = 'espnet_p2q8_camvid'
ENGINE = ['--model', MODEL, '--device', 'cpu', '--size', '240x176', '--precision', 'fp32']
SIZE = (120, 88)  # small camera frames: the network input size does not depend on them


@pytest.fixture()
def frames(camvid_dir: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return two small CamVid (BGR image, label) pairs."""
    pairs = []
    for name in sorted(path.name for path in (camvid_dir / 'val').iterdir())[:2]:
        bgr = cv2.resize(cv2.imread(str(camvid_dir / 'val' / name)), SIZE)
        labels = cv2.imread(str(camvid_dir / 'valannot' / name), cv2.IMREAD_UNCHANGED)
        pairs.append((bgr, cv2.resize(labels, SIZE, interpolation=cv2.INTER_NEAREST)))
    return pairs


def segment(*args: object) -> int:
    """Run ``espnet-ros segment`` with the small engine."""
    return cli_main(['segment', *ENGINE, *map(str, args)])


def test_inputs_sharing_a_stem_keep_their_own_outputs(tmp_path: Path, frames: list) -> None:
    inputs = [tmp_path / 'a' / 'frame.png', tmp_path / 'b' / 'frame.png',
              tmp_path / 'a' / 'frame.jpg']
    for path, (bgr, _) in zip(inputs, [frames[0], frames[1], frames[1]]):
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), bgr)
    assert segment(*inputs, '--out', tmp_path / 'out') == 0
    written = sorted(path.name for path in (tmp_path / 'out').glob('*_labels.png'))
    assert len(written) == len(inputs), written
    first = cv2.imread(str(tmp_path / 'out' / 'frame_png_1_labels.png'), cv2.IMREAD_UNCHANGED)
    second = cv2.imread(str(tmp_path / 'out' / 'frame_png_2_labels.png'), cv2.IMREAD_UNCHANGED)
    assert not np.array_equal(first, second), 'one output overwrote the other'


def test_a_bad_file_is_skipped_reported_and_fails_the_run(tmp_path: Path, frames: list,
                                                          capsys) -> None:
    (tmp_path / 'in').mkdir()
    cv2.imwrite(str(tmp_path / 'in' / 'a.png'), frames[0][0])
    (tmp_path / 'in' / 'b.png').write_bytes(b'not a png')
    cv2.imwrite(str(tmp_path / 'in' / 'c.png'), frames[1][0])
    assert segment(tmp_path / 'in', '--out', tmp_path / 'out') == 1
    err = capsys.readouterr().err
    assert 'b.png' in err and 'Traceback' not in err
    assert {path.name for path in (tmp_path / 'out').glob('*_labels.png')} == {
        'a_labels.png', 'c_labels.png'}


def test_unwritable_outputs_fail_the_run_naming_the_file(tmp_path: Path, frames: list,
                                                         capsys) -> None:
    cv2.imwrite(str(tmp_path / 'a.png'), frames[0][0])
    cv2.imwrite(str(tmp_path / 'b.png'), frames[1][0])
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'a_labels.png').symlink_to('/dev/full')   # a full disk
    (out / 'b_color.png').mkdir()                      # a path that is not a file
    assert segment(tmp_path / 'a.png', tmp_path / 'b.png', '--out', out) == 1
    captured = capsys.readouterr()
    assert 'a_labels.png' in captured.err and 'b_color.png' in captured.err
    assert 'for 0 of 2 images' in captured.out


@pytest.mark.parametrize('kind', ['file', 'inside a file'])
def test_an_unusable_out_folder_is_one_line(tmp_path: Path, frames: list, kind: str,
                                            capsys) -> None:
    cv2.imwrite(str(tmp_path / 'a.png'), frames[0][0])
    (tmp_path / 'taken').write_text('a file')
    out = tmp_path / 'taken' if kind == 'file' else tmp_path / 'taken' / 'out'
    assert segment(tmp_path / 'a.png', '--out', out) == 2
    err = capsys.readouterr().err
    assert str(out) in err and 'Traceback' not in err and len(err.strip().splitlines()) == 1


def labelled_folder(root: Path, frames: list, labels: list[np.ndarray]) -> list[str]:
    """Write images and labels under ``root``/images and ``root``/labels; return eval args."""
    for folder in ('images', 'labels'):
        (root / folder).mkdir()
    for index, ((bgr, _), truth) in enumerate(zip(frames, labels)):
        cv2.imwrite(str(root / 'images' / f'{index}.png'), bgr)
        cv2.imwrite(str(root / 'labels' / f'{index}.png'), truth)
    return ['eval', *ENGINE, '--images', str(root / 'images'), '--labels',
            str(root / 'labels'), '--json', str(root / 'scores.json')]


def test_eval_names_the_label_file_of_the_wrong_size(tmp_path: Path, frames: list,
                                                     capsys) -> None:
    wrong = cv2.resize(frames[1][1], (SIZE[0] // 2, SIZE[1]), interpolation=cv2.INTER_NEAREST)
    assert cli_main(labelled_folder(tmp_path, frames, [frames[0][1], wrong])) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / 'labels' / '1.png') in err, err


def test_eval_reports_labels_outside_the_class_table(tmp_path: Path, frames: list,
                                                     capsys) -> None:
    truth = frames[0][1].copy()
    truth[:4] = 200
    assert cli_main(labelled_folder(tmp_path, frames[:1], [truth])) == 0
    err = capsys.readouterr().err
    assert '200: ' + f'{4 * SIZE[0]:,} px' in err, err
    scores = json.loads((tmp_path / 'scores.json').read_text())
    assert scores['unscored_label_pixels'] == {'200': 4 * SIZE[0]}


def test_eval_writes_an_undefined_miou_as_json_null(tmp_path: Path, frames: list) -> None:
    void = np.full_like(frames[0][1], get_spec(MODEL).dataset.void_class)
    assert cli_main(labelled_folder(tmp_path, frames[:1], [void])) == 0

    def refuse(constant: str) -> None:
        raise ValueError(f'{constant} is not JSON')
    scores = json.loads((tmp_path / 'scores.json').read_text(), parse_constant=refuse)
    assert scores['miou'] is None and scores['pixel_accuracy'] is None
