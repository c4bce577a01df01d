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
A model folder: the fine-tuned checkpoint and the manifest that registers it by name.

``<out>/<name>.pth`` is a plain state_dict in our own parameter names (the family's
checkpoint filter passes them through), ``<out>/manifest.json`` has the official format
(:mod:`espnet_ros.zoo.registry`), with the base, the classes, the normalisation kept from
the base, the input size, the checkpoint's sha256 and the validation mIoU reached.
Every file is written under a temporary name and renamed, so that an interrupted or
failed write never leaves a file that looks complete.
"""

from contextlib import contextmanager
import errno
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from espnet_ros.training.classes import ClassTable
from espnet_ros.zoo import checkpoints
from espnet_ros.zoo.registry import MANIFEST, MANIFEST_FORMAT, ModelSpec, user_manifest
from espnet_ros.zoo.user_files import read_json


class WriteError(OSError):
    """A file of the model folder could not be written; nothing was replaced."""


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it over ``target`` on success."""
    partial = checkpoints.new_partial(target)  # its mode honours the umask, unlike mkstemp's
    try:
        yield partial
        os.replace(partial, target)
    except OSError as error:
        partial.unlink(missing_ok=True)
        reason = ('the disk is full' if error.errno == errno.ENOSPC
                  else error.strerror or str(error))
        raise WriteError(error.errno, f'{target}: cannot write ({reason}); the previous file, '
                         'if any, is unchanged') from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_json(target: Path, document: Any) -> None:
    """Write ``document`` as indented JSON, atomically."""
    with atomic_path(target) as partial:
        partial.write_text(json.dumps(document, indent=2) + '\n')


def save_state(target: Path, state: Mapping[str, Any]) -> None:
    """``torch.save`` atomically (a state_dict, or a resume state of plain types)."""
    with atomic_path(target) as partial:
        torch.save(state, partial)


def checkpoint_name(name: str) -> str:
    """Return the checkpoint file name of model ``name`` inside its folder."""
    return f'{name}.pth'


def _existing(folder: Path) -> dict[str, Any]:
    """Return the folder's manifest document (checked), or an empty one."""
    if not (folder / MANIFEST).is_file():
        return {'format': MANIFEST_FORMAT, 'datasets': {}, 'normalizations': {}, 'models': []}
    user_manifest(folder)  # raises ManifestError naming the file if it is not valid
    return read_json(folder / MANIFEST)


def register_model(folder: Path, *, spec: ModelSpec, base: ModelSpec, table: ClassTable,
                   val_miou: Mapping[str, Any]) -> str:
    """Write ``name``'s manifest entry for the checkpoint in ``folder``; return its sha256."""
    name = spec.name
    checkpoint = folder / checkpoint_name(name)
    sha256 = checkpoints.sha256_of(checkpoint)
    document = _existing(folder)
    norm = base.normalization
    document['datasets'][name] = table.manifest_entry(
        f'classes of {name} ({table.name}), fine-tuned from {base.name}')
    document['normalizations'][name] = {
        'description': f'kept from {base.name}: {norm.description}'.rstrip(': '),
        'channel_order': norm.channel_order, 'mean': list(norm.mean), 'std': list(norm.std),
        'post_scale': norm.post_scale}
    entry = {'name': name, 'family': spec.family, 'architecture': dict(spec.architecture),
             'checkpoint': checkpoint.name, 'sha256': sha256, 'dataset': name,
             'normalization': name, 'input_size': list(spec.input_size), 'base': base.name,
             'val_miou': dict(val_miou)}
    document['models'] = [m for m in document['models'] if m.get('name') != name] + [entry]
    write_json(folder / MANIFEST, document)
    return sha256
