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
The user's class table: names, RGB colours and the label value that is void.

Read from a small YAML or JSON file, or taken from a registry dataset (``camvid``,
``cityscapes``, ``pascal``) so that a fine-tune on those labels keeps their table::

    classes:
      - {name: floor, color: [128, 64, 128]}
      - {name: obstacle, color: [220, 20, 60]}
    void: 255

``void`` is the label value left out of the loss and of scoring: either the index of one
of the classes (as CamVid's ``unlabelled``, 11) or a value past the last class (e.g. 255);
leave it out or set it to null when every pixel is labelled.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from espnet_ros.zoo.registry import Dataset, official
from espnet_ros.zoo.user_files import read_document, short_repr, UserFileError

# Short names accepted for the registry's datasets.
DATASET_ALIASES = {'camvid': 'camvid', 'cityscapes': 'cityscapes', 'pascal': 'pascal_voc',
                   'pascal_voc': 'pascal_voc'}
MAX_LABEL_VALUE = 255  # labels are 8-bit PNGs


class ClassFileError(ValueError):
    """A class file that cannot be read or does not describe a class table."""


@dataclass(frozen=True)
class ClassTable:
    """The classes a fine-tuned network predicts, in label-value order."""

    name: str
    classes: tuple[str, ...]
    palette: np.ndarray  # K x 3 uint8, RGB
    void: Optional[int]

    @property
    def num_classes(self) -> int:
        """Return the number of network outputs."""
        return len(self.classes)

    def allowed_values(self) -> set[int]:
        """Return every label value a label image may hold."""
        return set(range(self.num_classes)) | ({self.void} if self.void is not None else set())

    def same_as(self, dataset: Dataset) -> bool:
        """Tell whether ``dataset`` has these very classes in this order."""
        return self.classes == dataset.classes

    def manifest_entry(self, description: str) -> dict[str, Any]:
        """Return the table as a manifest ``datasets`` entry."""
        return {'description': description, 'classes': list(self.classes),
                'palette': self.palette.astype(int).tolist(), 'void_class': self.void}


def from_dataset(dataset: Dataset) -> ClassTable:
    """Return the class table of a registry dataset."""
    return ClassTable(dataset.name, dataset.classes, dataset.palette, dataset.void_class)


def registry_dataset(name: str) -> Dataset:
    """Return the registry dataset called ``name`` (or one of its short names)."""
    wanted = DATASET_ALIASES[name]
    return next(spec.dataset for spec in official().values() if spec.dataset.name == wanted)


def _check_colour(path: Path, index: int, colour: Any) -> list[int]:
    if (not isinstance(colour, (list, tuple)) or len(colour) != 3
            or not all(isinstance(c, int) and 0 <= c <= MAX_LABEL_VALUE for c in colour)):
        raise ClassFileError(f'{path}: class {index} colour must be [r, g, b] with 0..255 '
                             f'integers, got {short_repr(colour)}')
    return list(colour)


def read_class_file(path: Path) -> ClassTable:
    """Return the class table of a YAML or JSON file; any problem raises naming the file."""
    try:
        document = read_document(path)
    except UserFileError as error:
        raise ClassFileError(f'the class file does not parse: {error}') from None
    if not isinstance(document, dict) or not isinstance(document.get('classes'), list) \
            or not document['classes']:
        raise ClassFileError(f'{path}: expected a mapping with a non-empty list `classes` of '
                             '{name, color} entries (and optionally `void`)')
    names, palette = [], []
    for index, entry in enumerate(document['classes']):
        if not isinstance(entry, dict) or not isinstance(entry.get('name'), str) \
                or not entry['name']:
            raise ClassFileError(f'{path}: class {index} must be a mapping with a `name` string '
                                 f'and a `color`, got {short_repr(entry)}')
        names.append(entry['name'])
        palette.append(_check_colour(path, index, entry.get('color')))
    if len(set(names)) != len(names):
        raise ClassFileError(f'{path}: class names repeat: {short_repr(names)}')
    if len(names) > MAX_LABEL_VALUE:
        raise ClassFileError(f'{path}: {len(names)} classes do not fit 8-bit labels')
    void = document.get('void')
    if void is not None and (not isinstance(void, int) or not 0 <= void <= MAX_LABEL_VALUE):
        raise ClassFileError(f'{path}: void must be a label value 0..255 or null, got '
                             f'{short_repr(void)}')
    return ClassTable(path.stem, tuple(names), np.asarray(palette, np.uint8), void)


def load_class_table(argument: str) -> ClassTable:
    """Return the table named by ``--classes``: a registry dataset name or a file."""
    if argument in DATASET_ALIASES:
        return from_dataset(registry_dataset(argument))
    path = Path(argument)
    if not path.is_file():
        raise ClassFileError(f'{path}: no such class file (expected a YAML or JSON class table, '
                             f'or one of {", ".join(sorted(DATASET_ALIASES))})')
    return read_class_file(path)
