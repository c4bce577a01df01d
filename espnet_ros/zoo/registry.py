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
                                 espnetv2_checkpoint_filter, ESPNetv2Segmentation)
from espnet_ros.zoo import checkpoints

MANIFEST = 'manifest.json'
# The model the node, the launch files and every command use when none is named.
DEFAULT_MODEL = 'espnet_p2q8_cityscapes'
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


def _parse(manifest: Mapping[str, Any]) -> dict[str, ModelSpec]:
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
            checkpoint=entry['checkpoint'], sha256=entry['sha256'], url=entry['url'],
            dataset=datasets[entry['dataset']],
            normalization=normalizations[entry['normalization']],
            input_size=tuple(entry['input_size']), published_miou=entry.get('published_miou'))
    return specs


@functools.lru_cache(maxsize=1)
def _manifest() -> Mapping[str, Any]:
    return json.loads(manifest_path().read_text())


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, ModelSpec]:
    """Return every registered model by name, in manifest order."""
    return _parse(_manifest())


def sample_images() -> list[Mapping[str, str]]:
    """Return the manifest's sample frames (file, url, sha256) for demos on bare machines."""
    return list(_manifest()['samples'])


def get_spec(name: str) -> ModelSpec:
    """Return the registry entry ``name``; an unknown name lists the known ones."""
    try:
        return registry()[name]
    except KeyError:
        known = ', '.join(registry())
        raise UnknownModelError(f'unknown model {name!r}; known models: {known}') from None


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
    return (f'Fetch it with `espnet-ros fetch --model {spec.name}` (downloads {spec.url}), '
            'or `espnet-ros fetch --from DIR` from a local copy of the official files, or put '
            f'it at <dir>/{spec.checkpoint} under ${checkpoints.MODELS_ENV}.')


def resolve_checkpoint(spec: ModelSpec, *, weights_dir: Optional[Path] = None) -> Path:
    """Return the verified checkpoint of ``spec`` found over the search folders."""
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
    ``weights_only=True``). Keys are mapped to ours and loaded strictly.
    """
    spec = get_spec(name)
    if checkpoint is None:
        path = resolve_checkpoint(spec, weights_dir=Path(weights_dir) if weights_dir else None)
    else:
        path = Path(checkpoint)
        if allow_unverified and path.is_file():
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
    _LOG.debug('loaded %s from %s', name, path)
    return network.eval()
