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
Files users write are read with bounds: manifests, class tables, training frames.

A hostile or careless file gets one error naming the file and the field, never a
traceback, a memory blow-up or a path outside its folder; one bad model folder never takes
the official models with it.
"""

import copy
import json
import logging
import os
from pathlib import Path
import struct
import subprocess
import sys
import zlib

import pytest

from espnet_ros.training.classes import ClassFileError, read_class_file
from espnet_ros.zoo import checkpoints, registry

ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
classes: [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""
MAX_MESSAGE = 600
TIMEOUT_S = 120


def test_yaml_alias_bomb_is_refused_in_a_short_message(tmp_path: Path) -> None:
    path = tmp_path / 'classes.yaml'
    path.write_text(ALIAS_BOMB)
    with pytest.raises(ClassFileError) as error:
        read_class_file(path)
    text = str(error.value)
    assert str(path) in text and 'aliases' in text, text
    assert len(text) < MAX_MESSAGE and text.count('lol') < 20, text[:MAX_MESSAGE]


def test_train_refuses_an_alias_bomb_in_one_line(tmp_path: Path) -> None:
    bomb = tmp_path / 'classes.yaml'
    bomb.write_text(ALIAS_BOMB)
    result = subprocess.run(
        [sys.executable, '-m', 'espnet_ros.cli', 'train', '--classes', str(bomb), '--images',
         str(tmp_path), '--labels', str(tmp_path), '--name', 'bomb', '--out',
         str(tmp_path / 'out'), '--epochs', '1'], capture_output=True, text=True,
        timeout=TIMEOUT_S)
    assert result.returncode == 2, result.stderr[-MAX_MESSAGE:]
    assert 'aliases' in result.stderr and len(result.stderr) < MAX_MESSAGE, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr


def test_a_few_aliases_are_fine(tmp_path: Path) -> None:
    path = tmp_path / 'classes.yaml'
    path.write_text('red: &red [255, 0, 0]\nclasses:\n  - {name: a, color: *red}\n'
                    '  - {name: b, color: [0, 255, 0]}\n')
    assert read_class_file(path).classes == ('a', 'b')


@pytest.mark.parametrize('suffix,text', [
    ('.yaml', 'classes: ' + '[' * 5000 + ']' * 5000),
    ('.json', '{"classes": ' + '[' * 100000 + ']' * 100000 + '}'),
])
def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path: Path, suffix: str,
                                                       text: str) -> None:
    path = tmp_path / f'classes{suffix}'
    path.write_text(text)
    with pytest.raises(ClassFileError, match='nested deeper'):
        read_class_file(path)


def test_large_files_are_refused_unread(tmp_path: Path) -> None:
    from espnet_ros.zoo.user_files import MAX_DOCUMENT_BYTES, read_document, UserFileError

    path = tmp_path / 'big.yaml'
    path.write_text('x: ' + 'y' * (MAX_DOCUMENT_BYTES + 10))
    with pytest.raises(UserFileError, match='larger than'):
        read_document(path)


def test_class_error_quotes_a_bounded_value(tmp_path: Path) -> None:
    path = tmp_path / 'classes.yaml'
    path.write_text('classes:\n  - ' + json.dumps(list(range(5000))) + '\n')
    with pytest.raises(ClassFileError) as error:
        read_class_file(path)
    assert len(str(error.value)) < MAX_MESSAGE


# Manifests -----------------------------------------------------------------------------------

def user_folder(tmp_path: Path, change=None, name: str = 'mine') -> Path:
    """Write a model folder whose manifest is an official model renamed, changed by ``change``."""
    official = json.loads(registry.manifest_path().read_text())
    model = copy.deepcopy(official['models'][0])
    model['name'] = 'my_model'
    model['checkpoint'] = 'my_model.pth'
    manifest = {'format': registry.MANIFEST_FORMAT,
                'datasets': {model['dataset']: official['datasets'][model['dataset']]},
                'normalizations': {model['normalization']:
                                   official['normalizations'][model['normalization']]},
                'models': [model]}
    if change is not None:
        change(manifest)
    folder = tmp_path / name
    folder.mkdir()
    (folder / registry.MANIFEST).write_text(json.dumps(manifest))
    return folder


def first(manifest: dict) -> dict:
    """Return the manifest's one model."""
    return manifest['models'][0]


def dataset(manifest: dict) -> dict:
    """Return the manifest's one dataset."""
    return next(iter(manifest['datasets'].values()))


def normalization(manifest: dict) -> dict:
    """Return the manifest's one normalization."""
    return next(iter(manifest['normalizations'].values()))


BAD_FIELDS = {
    'name': (lambda m: first(m).update(name='../../../../outside'), 'model name'),
    'trailing space': (lambda m: first(m).update(name='my_model '), 'model name'),
    'checkpoint': (lambda m: first(m).update(checkpoint='/etc/passwd'), "'checkpoint'"),
    'checkpoint up': (lambda m: first(m).update(checkpoint='../x.pth'), "'checkpoint'"),
    'palette': (lambda m: dataset(m)['palette'][0].__setitem__(0, 300), "'palette'"),
    'input_size': (lambda m: first(m).update(input_size=[0, 0]), "'input_size'"),
    'std': (lambda m: normalization(m).update(std=[0, 1, 1]), "'std'"),
    'architecture': (lambda m: first(m)['architecture'].update(bogus=1), "'architecture'"),
    'void_class': (lambda m: dataset(m).update(void_class='abc'), "'void_class'"),
    'family': (lambda m: first(m).update(family='resnet'), "'family'"),
    'sha256': (lambda m: first(m).update(sha256='abc'), "'sha256'"),
}


@pytest.mark.parametrize('case', sorted(BAD_FIELDS))
def test_every_manifest_field_is_checked_naming_file_and_field(tmp_path: Path,
                                                               case: str) -> None:
    change, field = BAD_FIELDS[case]
    folder = user_folder(tmp_path, change)
    with pytest.raises(registry.ManifestError) as error:
        registry.user_manifest(folder)
    text = str(error.value)
    assert str(folder / registry.MANIFEST) in text and field in text, text


def test_checkpoint_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    folder = user_folder(tmp_path)
    (folder / 'my_model.pth').symlink_to('/etc/hostname')
    with pytest.raises(registry.ManifestError, match='leads out of'):
        registry.user_manifest(folder)


def test_a_bad_folder_is_skipped_and_the_others_still_load(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    bad = user_folder(tmp_path, BAD_FIELDS['name'][0], name='bad')
    good = user_folder(tmp_path, name='good')
    monkeypatch.setenv(checkpoints.MODELS_ENV, f'{bad}{os.pathsep}{good}')
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        models = registry.registry()
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == 1 and f'skipping the user model folder {bad}' in warned[0], warned
    assert set(registry.official()) < set(models) and 'my_model' in models
    assert not any('outside' in name for name in models)


def test_models_command_survives_a_bad_folder(tmp_path: Path) -> None:
    bad = user_folder(tmp_path, BAD_FIELDS['palette'][0], name='bad')
    environment = {**os.environ, checkpoints.MODELS_ENV: str(bad)}
    result = subprocess.run([sys.executable, '-m', 'espnet_ros.cli', 'models'],
                            capture_output=True, text=True, env=environment, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-2000:]
    assert registry.DEFAULT_MODEL in result.stdout
    assert result.stderr.count('skipping the user model folder') == 1, result.stderr
    assert 'Traceback' not in result.stderr


# Training frames -------------------------------------------------------------------------------

def png_header(width: int, height: int) -> bytes:
    """Return a PNG that declares ``width`` x ``height`` (its header is all PIL reads first)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(b''))
            + chunk(b'IEND', b''))


def test_decompression_bomb_frame_is_refused_naming_it(tmp_path: Path) -> None:
    from espnet_ros.training.classes import from_dataset, registry_dataset
    from espnet_ros.training.data import DataError, scan_folder

    images, labels = tmp_path / 'images', tmp_path / 'labels'
    images.mkdir()
    labels.mkdir()
    (images / 'a.png').write_bytes(png_header(16000, 12000))
    (labels / 'a.png').write_bytes(png_header(16000, 12000))
    with pytest.raises(DataError, match=f'{images / "a.png"}.*pixels'):
        scan_folder(images, labels, from_dataset(registry_dataset('camvid')))
