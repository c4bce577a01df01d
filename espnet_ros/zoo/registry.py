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
import inspect
import logging
import math
from pathlib import Path, PurePosixPath
import re
from typing import Any, Callable, Mapping, Optional, Union
import warnings

import numpy as np
from torch import nn, Tensor

from espnet_ros.networks import (ESPNet, espnet_architecture_for_classes,
                                 espnet_checkpoint_filter, ESPNetC, espnetv2_checkpoint_filter,
                                 ESPNetv2Segmentation, flush_subnormals)
from espnet_ros.networks.subnormals import count_subnormal_values
from espnet_ros.zoo import checkpoints
from espnet_ros.zoo import DEFAULT_MODEL  # noqa: F401 - the registry's default, re-exported
from espnet_ros.zoo.label_map import IGNORE_NAME
from espnet_ros.zoo.user_files import read_json, short_repr, UserFileError

MANIFEST = 'manifest.json'
MANIFEST_FORMAT = 1
OFFICIAL = 'official'  # ModelSpec.source of the package's own manifest
USER = 'user'          # ModelSpec.source of a model folder's manifest
_LOG = logging.getLogger(__name__)
# A model name is also a file name (checkpoints, cache entries): no separators, no spaces.
MAX_MODEL_NAME = 100
MODEL_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,%d}' % (MAX_MODEL_NAME - 1))
SHA256 = re.compile(r'[0-9a-f]{64}')
MAX_CLASSES = 255          # labels are 8-bit
MAX_INPUT_SIDE = 16384
MAX_ARCHITECTURE_VALUE = 64  # p, q, scale: small numbers; a huge one would allocate forever
CHANNEL_ORDERS = ('rgb', 'bgr')

StateFilter = Callable[[Mapping[str, Tensor]], dict[str, Tensor]]
# (architecture, the class count it was made for, the class count wanted) -> architecture
ArchitectureAdapter = Callable[[Mapping[str, Any], int, int], dict[str, Any]]


def same_architecture(architecture: Mapping[str, Any], base_classes: int,
                      num_classes: int) -> dict[str, Any]:
    """Return ``architecture`` unchanged: the family's class count changes the head only."""
    return dict(architecture)


@dataclass(frozen=True)
class Family:
    """How to build one architecture family, adapt it to a class count and map checkpoints."""

    constructor: Callable[..., nn.Module]
    checkpoint_filter: StateFilter
    output_stride: int
    size_multiple: int  # input width and height must be multiples of this
    adapt_architecture: ArchitectureAdapter = same_architecture

    def build(self, num_classes: int, architecture: Mapping[str, Any]) -> nn.Module:
        """Return the network of ``architecture`` for ``num_classes``, freshly initialised."""
        return self.constructor(num_classes=num_classes, **architecture)

    def adapt(self, architecture: Mapping[str, Any], base_classes: int,
              num_classes: int) -> dict[str, Any]:
        """Return ``architecture`` (made for ``base_classes``) for ``num_classes`` outputs."""
        return self.adapt_architecture(architecture, base_classes, num_classes)


FAMILIES: dict[str, Family] = {
    # ESPNet downsamples three times (1/8); ESPNetv2's backbone four times (1/16), and its
    # pyramid pooling halves that once more, so its sizes are multiples of 32.
    'espnet_c': Family(ESPNetC, espnet_checkpoint_filter, output_stride=8, size_multiple=8),
    'espnet': Family(ESPNet, espnet_checkpoint_filter, output_stride=1, size_multiple=8,
                     adapt_architecture=espnet_architecture_for_classes),
    'espnetv2': Family(ESPNetv2Segmentation, espnetv2_checkpoint_filter, output_stride=1,
                       size_multiple=32),
}


@dataclass(frozen=True)
class NetworkSpec:
    """
    What builds a model's network: family, architecture and class count, as plain values.

    The part of a :class:`ModelSpec` that travels with weights: to a graph builder's child
    process (as JSON-safe values) and into training.
    """

    family: str
    architecture: Mapping[str, Any]
    num_classes: int

    def build(self) -> nn.Module:
        """Return the network with freshly initialised weights."""
        return FAMILIES[self.family].build(self.num_classes, self.architecture)

    def for_classes(self, num_classes: int) -> 'NetworkSpec':
        """Return this network adapted to ``num_classes`` outputs, as its family adapts it."""
        architecture = FAMILIES[self.family].adapt(self.architecture, self.num_classes,
                                                   num_classes)
        return NetworkSpec(self.family, architecture, num_classes)

    def to_json(self) -> dict[str, Any]:
        """Return the fields as plain values (weights-only loadable, JSON writable)."""
        return {'family': self.family, 'architecture': dict(self.architecture),
                'num_classes': self.num_classes}

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> 'NetworkSpec':
        """Return the spec :meth:`to_json` wrote; an unknown family is refused by name."""
        if values['family'] not in FAMILIES:
            raise ValueError(f'unknown network family {values["family"]!r}; known: '
                             f'{", ".join(FAMILIES)}')
        return cls(values['family'], dict(values['architecture']), int(values['num_classes']))


@dataclass(frozen=True)
class Dataset:
    """Class names and display colours of the labels a model predicts."""

    name: str
    classes: tuple[str, ...]
    palette: np.ndarray = field(repr=False)  # K x 3 uint8, RGB
    void_class: Optional[int]
    # True where the published labels take the void class too (a label map's ignore value);
    # a network's own arg-max never gives it.
    void_in_labels: bool = False


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

    @property
    def network(self) -> NetworkSpec:
        """Return what builds this model's network."""
        return NetworkSpec(self.family, dict(self.architecture), self.num_classes)

    def build(self) -> nn.Module:
        """Return the architecture with freshly initialised weights."""
        return self.network.build()


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


class _Fields:
    """Checks the fields of one manifest part; each error names the file, the part and field."""

    def __init__(self, source: Path, part: str, entry: Any) -> None:
        self.source, self.part = source, part
        if not isinstance(entry, Mapping):
            self.fail('', f'must be a mapping, got {type(entry).__name__}')
        self.entry = entry

    def fail(self, name: str, reason: str) -> None:
        where = f'{self.part}, field {name!r}' if name else self.part
        raise ManifestError(f'{self.source}: {where}: {reason}')

    def get(self, name: str, kind: Union[type, tuple], *, optional: bool = False) -> Any:
        if name not in self.entry:
            if optional:
                return None
            self.fail(name, 'missing')
        value = self.entry[name]
        if value is None and optional:
            return None
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            self.fail(name, f'must be {_kind_name(kind)}, got a boolean')
        if not isinstance(value, kind):
            self.fail(name, f'must be {_kind_name(kind)}, got {type(value).__name__}')
        return value

    def numbers(self, name: str, count: int, *, positive: bool = False) -> tuple:
        values = self.get(name, list)
        if len(values) != count or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in values):
            self.fail(name, f'must be {count} finite numbers, got {short_repr(values)}')
        if positive and not all(v > 0 for v in values):
            self.fail(name, f'must all be above 0, got {short_repr(values)}')
        return tuple(values)


def _kind_name(kind: Union[type, tuple]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: 'a string', int: 'an integer', float: 'a number', list: 'a list',
             dict: 'a mapping', bool: 'true or false'}
    return ' or '.join(names.get(k, k.__name__) for k in kinds)


def check_model_name(name: str, *, source: Path) -> str:
    """Return ``name`` if it can name a model (and a file), else raise naming the file."""
    if not MODEL_NAME.fullmatch(name) or name in ('.', '..'):
        raise ManifestError(
            f'{source}: model name {short_repr(name)} is not allowed: use letters, digits, '
            "'_', '-' and '.' only (no path separators, no spaces), at most "
            f'{MAX_MODEL_NAME} characters, starting with a letter or digit')
    return name


def _dataset(source: Path, name: str, entry: Any) -> Dataset:
    fields = _Fields(source, f'dataset {name!r}', entry)
    classes = fields.get('classes', list)
    if not classes or len(classes) > MAX_CLASSES or not all(
            isinstance(c, str) and c for c in classes):
        fields.fail('classes', f'must be 1..{MAX_CLASSES} non-empty names')
    palette = fields.get('palette', list)
    if len(palette) != len(classes) or not all(
            isinstance(colour, list) and len(colour) == 3 and all(
                isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= MAX_CLASSES
                for c in colour) for colour in palette):
        fields.fail('palette', f'must be one [r, g, b] of 0..{MAX_CLASSES} integers per class '
                    f'({len(classes)})')
    void = fields.get('void_class', int, optional=True)
    if void is not None and not 0 <= void <= MAX_CLASSES:
        fields.fail('void_class', f'must be a label value 0..{MAX_CLASSES} or null, got {void}')
    return Dataset(name, tuple(classes), np.asarray(palette, dtype=np.uint8), void)


def _normalization(source: Path, name: str, entry: Any) -> Normalization:
    fields = _Fields(source, f'normalization {name!r}', entry)
    order = fields.get('channel_order', str)
    if order not in CHANNEL_ORDERS:
        fields.fail('channel_order', f"must be one of {', '.join(CHANNEL_ORDERS)}, got "
                    f'{short_repr(order)}')
    scale = fields.get('post_scale', (int, float))
    if not math.isfinite(scale) or scale <= 0:
        fields.fail('post_scale', f'must be a finite number above 0, got {scale}')
    return Normalization(order, fields.numbers('mean', 3), fields.numbers('std', 3, positive=True),
                         scale, fields.get('description', str, optional=True) or '')


def _architecture(fields: '_Fields', family: str) -> dict[str, Any]:
    architecture = fields.get('architecture', dict)
    accepted = {name for name in inspect.signature(FAMILIES[family].constructor).parameters
                if name != 'num_classes'}
    for key, value in architecture.items():
        if key not in accepted:
            fields.fail('architecture', f'unknown key {short_repr(key)} for family {family} '
                        f"(it takes {', '.join(sorted(accepted))})")
        if isinstance(value, bool) or (isinstance(value, str) and 0 < len(value) <= 40):
            continue  # a switch or a named variant: the constructor checks its values
        if not isinstance(value, (int, float)) or not 0 < value <= MAX_ARCHITECTURE_VALUE:
            fields.fail('architecture', f'{key} must be a number in (0, '
                        f'{MAX_ARCHITECTURE_VALUE}], got {short_repr(value)}')
    return architecture


def _checkpoint(fields: '_Fields', folder: Optional[Path]) -> str:
    checkpoint = fields.get('checkpoint', str)
    relative = PurePosixPath(checkpoint)
    if (not checkpoint or checkpoint != checkpoint.strip() or relative.is_absolute()
            or '..' in relative.parts or '\\' in checkpoint):
        fields.fail('checkpoint', f'must be a path inside the model folder, got '
                    f'{short_repr(checkpoint)}')
    if folder is not None:
        resolved = (folder / checkpoint).resolve()
        if not resolved.is_relative_to(folder.resolve()):
            fields.fail('checkpoint', f'{checkpoint} leads out of {folder} (a link)')
    return checkpoint


def _parse(manifest: Any, *, source: Path, folder: Optional[Path] = None
           ) -> dict[str, ModelSpec]:
    top = _Fields(source, 'manifest', manifest)
    datasets = {name: _dataset(source, name, entry)
                for name, entry in top.get('datasets', dict).items()}
    normalizations = {name: _normalization(source, name, entry)
                      for name, entry in top.get('normalizations', dict).items()}
    specs: dict[str, ModelSpec] = {}
    for index, entry in enumerate(top.get('models', list)):
        raw_name = entry.get('name') if isinstance(entry, Mapping) else None
        fields = _Fields(source, f'model {short_repr(raw_name) if raw_name else index}', entry)
        name = check_model_name(fields.get('name', str), source=source)
        if name in specs:
            fields.fail('name', 'appears twice in this manifest')
        family = fields.get('family', str)
        if family not in FAMILIES:
            fields.fail('family', f'unknown family {short_repr(family)}; known: '
                        f"{', '.join(FAMILIES)}")
        sha256 = fields.get('sha256', str)
        if not SHA256.fullmatch(sha256):
            fields.fail('sha256', 'must be 64 hexadecimal digits')
        dataset, normalization = fields.get('dataset', str), fields.get('normalization', str)
        if dataset not in datasets:
            fields.fail('dataset', f"{short_repr(dataset)} is not among the manifest's datasets")
        if normalization not in normalizations:
            fields.fail('normalization', f'{short_repr(normalization)} is not among the '
                        "manifest's normalizations")
        size = fields.get('input_size', list)
        if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                     and 1 <= v <= MAX_INPUT_SIDE for v in size):
            fields.fail('input_size', f'must be [width, height], integers 1..{MAX_INPUT_SIDE}, '
                        f'got {short_repr(size)}')
        specs[name] = ModelSpec(
            name=name, family=family, architecture=_architecture(fields, family),
            checkpoint=_checkpoint(fields, folder), sha256=sha256,
            url=fields.get('url', str, optional=True) or '',
            dataset=datasets[dataset], normalization=normalizations[normalization],
            input_size=tuple(size), published_miou=fields.get('published_miou', dict,
                                                              optional=True),
            source=OFFICIAL if folder is None else USER, folder=folder,
            base=fields.get('base', str, optional=True),
            val_miou=fields.get('val_miou', dict, optional=True))
    return specs


@functools.lru_cache(maxsize=1)
def _manifest() -> Mapping[str, Any]:
    return read_json(manifest_path())


@functools.lru_cache(maxsize=1)
def official() -> dict[str, ModelSpec]:
    """Return the package's own models by name, in manifest order."""
    return _parse(_manifest(), source=manifest_path())


def user_manifest(folder: Path) -> dict[str, ModelSpec]:
    """Return the models of a model folder's ``manifest.json``, or raise naming the file."""
    path = folder / MANIFEST
    try:
        manifest = read_json(path)
    except UserFileError as error:
        raise ManifestError(f'{path} is not a valid espnet_ros model manifest: '
                            f'{str(error).removeprefix(f"{path}: ")}') from None
    if not isinstance(manifest, Mapping) or manifest.get('format') != MANIFEST_FORMAT:
        found = manifest.get('format') if isinstance(manifest, Mapping) else None
        raise ManifestError(f'{path} is not a valid espnet_ros model manifest: format is '
                            f'{short_repr(found)}, expected {MANIFEST_FORMAT}')
    try:
        return _parse(manifest, source=path, folder=folder)
    except ManifestError as error:
        raise ManifestError(f'{path} is not a valid espnet_ros model manifest: '
                            f'{str(error).removeprefix(f"{path}: ")}') from None


@functools.lru_cache(maxsize=8)
def _merged(folders: tuple[tuple[Path, int], ...]
            ) -> tuple[dict[str, ModelSpec], tuple[str, ...]]:
    """Return the models of the official and user manifests, and the user folders skipped."""
    merged = dict(official())
    skipped = []
    for folder, _ in folders:
        try:
            specs = user_manifest(folder)
            for name, spec in specs.items():
                if name in merged:
                    owner = merged[name].folder
                    raise ManifestError(
                        f'{folder / MANIFEST}: model {name!r} is already registered by '
                        f'{owner / MANIFEST if owner else "the package"}'
                        '; give the user model another name')
        except ManifestError as error:
            # One bad folder must not take the official models (or other folders) with it.
            _LOG.warning('skipping the user model folder %s: %s', folder, error)
            skipped.append(str(error))
            continue
        merged.update(specs)
    return merged, tuple(skipped)


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
    return _merged(_folder_versions())[0]


def _folder_versions() -> tuple[tuple[Path, int], ...]:
    # Keyed by each manifest's modification time: a model trained since is seen.
    return tuple((folder, (folder / MANIFEST).stat().st_mtime_ns)
                 for folder in user_model_folders())


def skipped_folders() -> tuple[str, ...]:
    """Return why each user model folder left out of :func:`registry` was skipped."""
    return _merged(_folder_versions())[1]


def sample_images() -> list[Mapping[str, str]]:
    """Return the manifest's sample frames (file, url, sha256) for demos on bare machines."""
    return list(_manifest()['samples'])


def get_spec(name: str) -> ModelSpec:
    """Return the registry entry ``name``; an unknown name lists the known ones."""
    try:
        return registry()[name]
    except KeyError:
        known = ', '.join(registry())
        skipped = ''.join(f'; skipped: {reason}' for reason in skipped_folders())
        problems = model_folder_problems()
        hint = (f' (${checkpoints.MODELS_ENV}: {"; ".join(problems)}; it takes model folders '
                'that espnet-ros train wrote, or folders of them)') if problems else ''
        raise UnknownModelError(f'unknown model {short_repr(name)}; known models: {known}'
                                f'{hint}{skipped}') from None


def labelled_classes(dataset: Dataset) -> list[tuple[int, str, tuple[int, int, int]]]:
    """
    Return (id, name, RGB colour) of every value the labels of ``dataset`` take.

    Its classes, then the void class where the labels take it: a label map's ignore value
    (named ``ignore``, drawn black), which the class table and LabelInfo list too.
    """
    entries = [(index, name, tuple(int(c) for c in color))
               for index, (name, color) in enumerate(zip(dataset.classes, dataset.palette))]
    void = dataset.void_class
    if dataset.void_in_labels and void is not None and void >= len(dataset.classes):
        entries.append((void, IGNORE_NAME, (0, 0, 0)))
    return entries


def class_table(spec: ModelSpec) -> dict[str, Any]:
    """Return the class table (ids, names, RGB colours) that the node latches as JSON."""
    return {
        'model': spec.name,
        'dataset': spec.dataset.name,
        'void_class': spec.dataset.void_class,
        'classes': [{'id': index, 'name': name, 'color': list(color)}
                    for index, name, color in labelled_classes(spec.dataset)],
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


def subnormal_message(name: str, count: int, path: Path) -> str:
    """Return the line that says how many subnormal weights of a checkpoint were set to zero."""
    return (f'{name}: {count:,} subnormal weights of {path} set to zero (slow on Intel CPUs, '
            'below float rounding in the outputs)')


def checkpoint_subnormals(spec: ModelSpec, *, weights_dir: Optional[Path] = None
                          ) -> tuple[int, int]:
    """Return how many of the verified checkpoint's float weights are subnormal, of how many."""
    path = resolve_checkpoint(spec, weights_dir=weights_dir)
    state = FAMILIES[spec.family].checkpoint_filter(checkpoints.read_state_dict(path))
    floats = [tensor for tensor in state.values() if tensor.is_floating_point()]
    return (sum(count_subnormal_values(tensor) for tensor in floats),
            sum(tensor.numel() for tensor in floats))


def load(name: str, weights_dir: Optional[Union[str, Path]] = None, *,
         checkpoint: Optional[Union[str, Path]] = None,
         allow_unverified: bool = False, keep_subnormals: bool = False,
         log: Optional[Callable[[str], None]] = None) -> nn.Module:
    """
    Return the pretrained network ``name`` on the CPU in eval mode.

    The checkpoint is ``checkpoint`` when given (an explicit file), else the first
    ``<dir>/<spec.checkpoint>`` over ``weights_dir``, ``$ESPNET_ROS_MODELS``, the installed
    ``share/espnet_ros/models`` and the source tree's ``models/``. Its sha256 must match the
    manifest unless ``allow_unverified`` is set for an explicit file (it is still read with
    ``weights_only=True``). Keys are mapped to ours and loaded strictly, and subnormal weights
    are set to zero (:mod:`espnet_ros.networks.subnormals`: they cost up to 10x on Intel), which
    ``log`` (default: this module's logger at INFO) hears once with their count.
    ``keep_subnormals`` leaves them as the checkpoint has them: only the benchmark's anchor row
    and the outputs comparison (``espnet-ros bench-subnormals``) want that.
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
    flushed = 0 if keep_subnormals else flush_subnormals(network)
    if flushed:
        (log or _LOG.info)(subnormal_message(name, flushed, path))
    _LOG.debug('loaded %s from %s', name, path)
    return network.eval()
