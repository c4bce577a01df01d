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
The registry of pretrained models: one named entry per official checkpoint.

The manifest (``models/manifest.json``, installed under ``share/espnet_ros/models``) is the
single source of truth: architecture, checkpoint file and sha256, classes and palette, the
exact input normalisation the authors trained with, and the training resolution.
:func:`load` turns a name into a verified network in eval mode.

User models (``espnet-ros train``) live in model folders named by ``$ESPNET_ROS_MODELS``;
a folder that holds a ``manifest.json`` of the same format adds its models to the registry,
marked ``source='user'``, with checkpoints relative to that folder and verified the same way.
"""

from dataclasses import dataclass, field
import functools
import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union
import warnings

import numpy as np
from torch import nn, Tensor

from espnet_ros.networks import (ESPNet, espnet_checkpoint_filter, ESPNetC,
                                 espnetv2_checkpoint_filter, ESPNetv2Segmentation,
                                 flush_subnormals)
from espnet_ros.zoo import checkpoints
from espnet_ros.zoo import DEFAULT_MODEL  # noqa: F401 - the registry's default, re-exported

MANIFEST = 'manifest.json'
MANIFEST_FORMAT = 1
OFFICIAL = 'official'  # ModelSpec.source of the package's own manifest
USER = 'user'          # ModelSpec.source of a model folder's manifest
_LOG = logging.getLogger(__name__)

StateFilter = Callable[[Mapping[str, Tensor]], dict[str, Tensor]]


@dataclass(frozen=True)
class Family:
    """How to build one architecture family and map its official checkpoint keys."""

    constructor: Callable[..., nn.Module]
    checkpoint_filter: StateFilter
    output_stride: int
    size_multiple: int  # input width and height must be multiples of this


FAMILIES: dict[str, Family] = {
    # ESPNet downsamples three times (1/8); ESPNetv2's backbone four times (1/16), and its
    # pyramid pooling halves that once more, so its sizes are multiples of 32.
    'espnet_c': Family(ESPNetC, espnet_checkpoint_filter, output_stride=8, size_multiple=8),
    'espnet': Family(ESPNet, espnet_checkpoint_filter, output_stride=1, size_multiple=8),
    'espnetv2': Family(ESPNetv2Segmentation, espnetv2_checkpoint_filter, output_stride=1,
                       size_multiple=32),
}


@dataclass(frozen=True)
class Dataset:
    """Class names and display colours of the labels a model predicts."""

    name: str
    classes: tuple[str, ...]
    palette: np.ndarray = field(repr=False)  # K x 3 uint8, RGB
    void_class: Optional[int]


@dataclass(frozen=True)
class Normalization:
    """Pixel normalisation: ``(x - mean) / std * post_scale`` on 0..255 values in channel_order."""

    channel_order: str  # 'rgb' or 'bgr': the order the network expects
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    post_scale: float
    description: str = ''

    def scale_shift(self) -> tuple[np.ndarray, np.ndarray]:
        """Return per-channel ``(scale, shift)``: the normalisation as one multiply-add."""
        scale = np.asarray([self.post_scale / s for s in self.std], dtype=np.float32)
        return scale, (-np.asarray(self.mean, dtype=np.float32) * scale).astype(np.float32)


@dataclass(frozen=True)
class ModelSpec:
    """Everything known about one pretrained model of the registry."""

    name: str
    family: str
    architecture: Mapping[str, Any]
    checkpoint: str  # relative to a weights folder, e.g. 'espnet/decoder/espnet_p_2_q_8.pth'
    sha256: str
    url: str
    dataset: Dataset
    normalization: Normalization
    input_size: tuple[int, int]  # (width, height) the model was trained at
    published_miou: Optional[Mapping[str, Any]] = None
    source: str = OFFICIAL
    folder: Optional[Path] = None  # a user model's folder; its checkpoint is relative to it
    base: Optional[str] = None  # the registry model a user model was fine-tuned from
    val_miou: Optional[Mapping[str, Any]] = None  # what a user model reached, and on what

    @property
    def num_classes(self) -> int:
        """Return the number of network outputs."""
        return len(self.dataset.classes)

    @property
    def output_stride(self) -> int:
        """Return how much smaller than its input the network's label map is."""
        return FAMILIES[self.family].output_stride

    @property
    def size_multiple(self) -> int:
        """Return the number the network's input width and height must be multiples of."""
        return FAMILIES[self.family].size_multiple

    def build(self) -> nn.Module:
        """Return the architecture with freshly initialised weights."""
        return FAMILIES[self.family].constructor(num_classes=self.num_classes,
                                                 **self.architecture)


class ManifestError(ValueError):
    """A user model folder's manifest that cannot be read or does not fit the registry."""


class UnknownModelError(KeyError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:
        """Return the message without KeyError's quoting."""
        return str(self.args[0])


def manifest_path() -> Path:
    """Return the manifest of the source tree, else the installed one."""
    for folder in (checkpoints.source_models_dir(), checkpoints.installed_models_dir()):
        if folder is not None and (folder / MANIFEST).is_file():
            return folder / MANIFEST
    raise FileNotFoundError(f'no {MANIFEST} in {checkpoints.source_models_dir()} or the installed '
                            'share/espnet_ros/models: the package is not installed correctly')


def _parse(manifest: Mapping[str, Any], *, folder: Optional[Path] = None
           ) -> dict[str, ModelSpec]:
    datasets = {
        name: Dataset(name, tuple(entry['classes']),
                      np.asarray(entry['palette'], dtype=np.uint8), entry['void_class'])
        for name, entry in manifest['datasets'].items()}
    normalizations = {
        name: Normalization(entry['channel_order'], tuple(entry['mean']), tuple(entry['std']),
                            entry['post_scale'], entry.get('description', ''))
        for name, entry in manifest['normalizations'].items()}
    specs = {}
    for entry in manifest['models']:
        specs[entry['name']] = ModelSpec(
            name=entry['name'], family=entry['family'], architecture=entry['architecture'],
            checkpoint=entry['checkpoint'], sha256=entry['sha256'], url=entry.get('url', ''),
            dataset=datasets[entry['dataset']],
            normalization=normalizations[entry['normalization']],
            input_size=tuple(entry['input_size']), published_miou=entry.get('published_miou'),
            source=OFFICIAL if folder is None else USER, folder=folder,
            base=entry.get('base'), val_miou=entry.get('val_miou'))
    return specs


@functools.lru_cache(maxsize=1)
def _manifest() -> Mapping[str, Any]:
    return json.loads(manifest_path().read_text())


@functools.lru_cache(maxsize=1)
def official() -> dict[str, ModelSpec]:
    """Return the package's own models by name, in manifest order."""
    return _parse(_manifest())


def user_manifest(folder: Path) -> dict[str, ModelSpec]:
    """Return the models of a model folder's ``manifest.json``, or raise naming the file."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        if manifest.get('format') != MANIFEST_FORMAT:
            raise ValueError(f'format is {manifest.get("format")!r}, expected {MANIFEST_FORMAT}')
        specs = _parse(manifest, folder=folder)
        for spec in specs.values():
            if spec.family not in FAMILIES:
                raise ValueError(f'model {spec.name}: unknown family {spec.family!r}')
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        detail = f'missing key {error}' if isinstance(error, KeyError) else str(error)
        raise ManifestError(f'{path} is not a valid espnet_ros model manifest: '
                            f'{detail}') from None
    return specs


@functools.lru_cache(maxsize=8)
def _merged(folders: tuple[tuple[Path, int], ...]) -> dict[str, ModelSpec]:
    merged = dict(official())
    for folder, _ in folders:
        for name, spec in user_manifest(folder).items():
            if name in merged:
                raise ManifestError(
                    f'{folder / MANIFEST}: model {name!r} is already registered by '
                    f'{merged[name].folder / MANIFEST if merged[name].folder else "the package"}'
                    '; give the user model another name')
            merged[name] = spec
    return merged


def _model_folders_in(folder: Path) -> list[Path]:
    """Return ``folder`` if it is a model folder, else its subfolders that are, by name."""
    if (folder / MANIFEST).is_file():
        return [folder]
    try:
        return sorted(sub for sub in folder.iterdir() if (sub / MANIFEST).is_file())
    except OSError:  # missing, not a folder, unreadable: no user models there
        return []


def user_model_folders() -> list[Path]:
    """
    Return the user model folders of ``$ESPNET_ROS_MODELS``.

    Each entry may be a model folder (``espnet-ros train --out``) or a folder of model
    folders (``~/models`` holding ``warehouse_bot/``, ``field_bot/``).
    """
    package = {folder.resolve() for folder in (checkpoints.source_models_dir(),
                                               checkpoints.installed_models_dir()) if folder}
    # The package's own models/ folder may be on the variable too (fetch writes there).
    return [found for folder in checkpoints.env_folders() for found in _model_folders_in(folder)
            if found.resolve() not in package]


def model_folder_problems() -> list[str]:
    """Return what is wrong with each ``$ESPNET_ROS_MODELS`` entry that gives no model."""
    problems = []
    for folder in checkpoints.env_folders():
        if not folder.is_dir():
            problems.append(f'{folder} does not exist' if not folder.exists()
                            else f'{folder} is not a folder')
        elif not _model_folders_in(folder) and not any(
                (folder / family).is_dir() for family in FAMILIES):
            problems.append(f'{folder} holds no {MANIFEST}, nor do its subfolders')
    return problems


def registry() -> dict[str, ModelSpec]:
    """Return every model by name: the official ones, then those of the user's folders."""
    # Keyed by each manifest's modification time: a model trained since is seen.
    return _merged(tuple((folder, (folder / MANIFEST).stat().st_mtime_ns)
                         for folder in user_model_folders()))


def sample_images() -> list[Mapping[str, str]]:
    """Return the manifest's sample frames (file, url, sha256) for demos on bare machines."""
    return list(_manifest()['samples'])


def get_spec(name: str) -> ModelSpec:
    """Return the registry entry ``name``; an unknown name lists the known ones."""
    try:
        return registry()[name]
    except KeyError:
        known = ', '.join(registry())
        problems = model_folder_problems()
        hint = (f' (${checkpoints.MODELS_ENV}: {"; ".join(problems)}; it takes model folders '
                'that espnet-ros train wrote, or folders of them)') if problems else ''
        raise UnknownModelError(f'unknown model {name!r}; known models: {known}{hint}') from None


def class_table(spec: ModelSpec) -> dict[str, Any]:
    """Return the class table (ids, names, RGB colours) that the node latches as JSON."""
    return {
        'model': spec.name,
        'dataset': spec.dataset.name,
        'void_class': spec.dataset.void_class,
        'classes': [{'id': index, 'name': name, 'color': [int(c) for c in color]}
                    for index, (name, color) in enumerate(zip(spec.dataset.classes,
                                                              spec.dataset.palette))],
    }


def how_to_fetch(spec: ModelSpec) -> str:
    """Return the advice printed when a checkpoint is missing or wrong."""
    if spec.folder is not None:
        return (f'{spec.name} is a user model of {spec.folder / MANIFEST}: its checkpoint is '
                'written by `espnet-ros train`; train it again or copy the whole model folder.')
    return (f'Fetch it with `espnet-ros fetch --model {spec.name}` (downloads {spec.url}), '
            'or `espnet-ros fetch --from DIR` from a local copy of the official files, or put '
            f'it at <dir>/{spec.checkpoint} under ${checkpoints.MODELS_ENV}.')


def resolve_checkpoint(spec: ModelSpec, *, weights_dir: Optional[Path] = None) -> Path:
    """Return the verified checkpoint of ``spec`` found over the search folders."""
    if spec.folder is not None:
        found = spec.folder / spec.checkpoint
        checkpoints.verify(found, spec.sha256, how_to_fetch=how_to_fetch(spec))
        return found
    found = checkpoints.find_checkpoint(spec.checkpoint, weights_dir)
    if found is None:
        searched = ', '.join(str(d) for d in checkpoints.search_dirs(weights_dir))
        raise checkpoints.CheckpointError(
            f'checkpoint {spec.checkpoint} for model {spec.name} not found in: {searched} '
            f'(expected sha256 {spec.sha256}). {how_to_fetch(spec)}')
    checkpoints.verify(found, spec.sha256, how_to_fetch=how_to_fetch(spec))
    return found


def load(name: str, weights_dir: Optional[Union[str, Path]] = None, *,
         checkpoint: Optional[Union[str, Path]] = None,
         allow_unverified: bool = False) -> nn.Module:
    """
    Return the pretrained network ``name`` on the CPU in eval mode.

    The checkpoint is ``checkpoint`` when given (an explicit file), else the first
    ``<dir>/<spec.checkpoint>`` over ``weights_dir``, ``$ESPNET_ROS_MODELS``, the installed
    ``share/espnet_ros/models`` and the source tree's ``models/``. Its sha256 must match the
    manifest unless ``allow_unverified`` is set for an explicit file (it is still read with
    ``weights_only=True``). Keys are mapped to ours and loaded strictly, and subnormal weights
    are set to zero (:mod:`espnet_ros.networks.subnormals`: they cost up to 10x on Intel).
    """
    spec = get_spec(name)
    if checkpoint is None:
        path = resolve_checkpoint(spec, weights_dir=Path(weights_dir) if weights_dir else None)
    else:
        path = Path(checkpoint)
        if not path.is_file():
            # A path the user typed: the advice is to check it, not to fetch or train again.
            found_by = (f'its model folder {spec.folder}' if spec.folder is not None
                        else 'espnet-ros models lists it')
            raise checkpoints.CheckpointError(
                f'checkpoint {path} (the explicit weights file for {spec.name}) '
                f'{"is not a file" if path.exists() else "does not exist"}: check the path, '
                f'or leave it empty to use the checkpoint the registry finds ({found_by})')
        if allow_unverified:
            checkpoints.check_size(path)  # before hashing: a huge file is refused at once
            if (actual := checkpoints.sha256_of(path)) != spec.sha256:
                warnings.warn(f'checkpoint {path} is not the official {spec.name} checkpoint '
                              f'(sha256 {actual}, the manifest has {spec.sha256}); loading it '
                              'because allow_unverified is set, weights only')
        else:
            checkpoints.verify(path, spec.sha256, how_to_fetch=how_to_fetch(spec))
    network = spec.build()
    state = FAMILIES[spec.family].checkpoint_filter(checkpoints.read_state_dict(path))
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise checkpoints.CheckpointError(
            f'checkpoint {path} does not fit model {spec.name} ({spec.family}, '
            f'{dict(spec.architecture)}, {spec.num_classes} classes): {error}') from error
    flushed = flush_subnormals(network)
    if flushed:
        _LOG.info('%s: %d subnormal weights of %s set to zero (slow on Intel CPUs, below '
                  'float rounding in the outputs)', name, flushed, path)
    _LOG.debug('loaded %s from %s', name, path)
    return network.eval()
