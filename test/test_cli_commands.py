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


"""``espnet-ros`` itself: a quick --help, one model's class table, default output names."""

import os
from pathlib import Path
import subprocess
import sys

import pytest

from espnet_ros.cli import main as cli_main
from espnet_ros.cli.commands import COMMANDS
from espnet_ros.cli.export import default_file_name
from espnet_ros.zoo.registry import get_spec

REPO_ROOT = Path(__file__).resolve().parents[1]
HEAVY = ('torch', 'cv2', 'espnet_ros.zoo.registry', 'espnet_ros.runtime.engine')


def test_help_lists_every_command_without_importing_torch() -> None:
    """``espnet-ros --help`` answers from the command table alone."""
    code = ('import sys\nfrom espnet_ros.cli import main\ntry:\n    main(["--help"])\n'
            'except SystemExit as end:\n    assert end.code == 0\n'
            f'print([name for name in {HEAVY!r} if name in sys.modules])')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == '[]', done.stdout
    shown = ' '.join(done.stdout.split())  # argparse wraps long help lines
    for name, (_, help_text) in COMMANDS.items():
        assert f' {name} ' in shown and help_text in shown


@pytest.mark.parametrize('name', list(COMMANDS))
def test_each_command_has_its_full_parser(name: str, capsys: pytest.CaptureFixture) -> None:
    """``espnet-ros NAME --help`` loads the command's own arguments."""
    with pytest.raises(SystemExit) as end:
        cli_main([name, '--help'])
    assert end.value.code == 0
    assert f'usage: espnet-ros {name}' in capsys.readouterr().out


TIMED_COMMANDS = ('bench', 'bench-cloud', 'bench-groups', 'bench-startup')


@pytest.mark.parametrize('name', TIMED_COMMANDS)
@pytest.mark.parametrize('arguments, reason', [
    (['--repeats', '0'], 'argument --repeats: must be at least 1, got 0'),
    (['--repeats', 'many'], "argument --repeats: 'many' is not an integer"),
    (['--warmup', '-1'], 'argument --warmup: must be at least 0, got -1'),
])
def test_benchmarks_refuse_run_counts_with_a_reason(name: str, arguments: list, reason: str,
                                                    capsys: pytest.CaptureFixture) -> None:
    """A count of runs a benchmark cannot time is refused before anything is built."""
    if name == 'bench-startup' and arguments[0] == '--warmup':
        reason = 'unrecognized arguments: --warmup -1'  # it times every phase from a start
    with pytest.raises(SystemExit) as end:
        cli_main([name, *arguments])
    assert end.value.code == 2
    assert reason in capsys.readouterr().err


def test_models_name_prints_the_class_table(capsys: pytest.CaptureFixture,
                                            weights_dir: Path) -> None:
    """One model: its registry line, then id, class name and palette colour per class."""
    assert cli_main(['models', 'espnet_p2q8_camvid', '--weights-dir', str(weights_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:6] == ['espnet_p2q8_camvid', 'official', 'camvid', '12',
                                    '480x360', 'verified']
    spec = get_spec('espnet_p2q8_camvid')
    rows = lines[lines.index('') + 2:]
    assert len(rows) == spec.num_classes
    assert rows[3].split() == ['3', 'road', *map(str, spec.dataset.palette[3])]
    assert rows[11].split()[:2] == ['11', 'unlabelled'] and '(void)' in rows[11]


def test_unknown_model_is_one_line(capsys: pytest.CaptureFixture) -> None:
    """A mistyped model name gets the known names, no traceback."""
    assert cli_main(['models', 'espnet_p2q9']) == 2
    assert capsys.readouterr().err.startswith('espnet-ros models: error: unknown model')


@pytest.mark.parametrize('name,size,expected', [
    ('espnet_p2q8_cityscapes', None, 'espnet_p2q8_cityscapes_1024x512.onnx'),
    ('espnet_p2q8_cityscapes', (512, 0), 'espnet_p2q8_cityscapes_512x256.onnx'),
    ('espnetv2_s0.5_cityscapes_512x256', None, 'espnetv2_s0.5_cityscapes_512x256.onnx'),
    ('espnetv2_s0.5_cityscapes_512x256', (256, 128),
     'espnetv2_s0.5_cityscapes_512x256_256x128.onnx'),
])
def test_export_file_name_does_not_repeat_the_size(name: str, size: tuple, expected: str
                                                   ) -> None:
    """A model whose name ends with its size is not named MODEL_WxH_WxH.onnx."""
    assert default_file_name(get_spec(name), size) == expected


def test_outputs_default_to_the_ignored_out_folder(tmp_path: Path, cityscapes_image: Path,
                                                   weights_dir: Path) -> None:
    """Commands write under out/ of the current folder unless told otherwise."""
    (tmp_path / 'img').mkdir()
    (tmp_path / 'img' / 'a.png').symlink_to(cityscapes_image)
    code = ('import sys\nfrom espnet_ros.cli import main\n'
            "sys.exit(main(['segment', '--model', 'espnet_c_p2q3_cityscapes', '--size', "
            f"'128x0', '--device', 'cpu', '--weights-dir', {str(weights_dir)!r}, 'img']))")
    done = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ})
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / 'out' / 'segment').iterdir()) == [
        'a_color.png', 'a_labels.png', 'a_overlay.png']
    ignored = subprocess.run(['git', 'check-ignore', '-q', 'out/segment/a_color.png'],
                             cwd=REPO_ROOT)
    assert ignored.returncode == 0, 'out/ is not git-ignored in the source tree'
