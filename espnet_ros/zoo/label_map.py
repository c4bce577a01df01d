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
Label maps: the planner's classes as named groups of the model's classes; no ROS.

A label map is a YAML file, read through the bounded loader of
:mod:`espnet_ros.zoo.user_files`::

    groups:
      - {name: ground, color: [128, 64, 128], members: [road, sidewalk, terrain]}
      - {name: person, color: [220, 20, 60], members: [person, rider]}
    unlisted: ignore   # model classes in no group: ignore (the ignore value) or keep
    ignore_value: 255

Group ids are the groups' order (0, 1, 2, ...); with ``unlisted: keep`` the model classes in
no group follow, in the model's order, with their own names and colours; with ``unlisted:
ignore`` they are published as ``ignore_value``. A map is checked against the model's class
names when it is read: a file that names an unknown class, puts a class in two groups, has an
empty group, two groups of one name, more than :data:`MAX_PUBLISHED_CLASSES` published
classes, a colour outside 0-255 or an ignore value that is also a group's id is refused with
the file, the group and what was expected.
"""

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from espnet_ros.runtime.options import Unlisted
from espnet_ros.zoo.user_files import (parse_yaml, read_user_text, sequence_item_lines,
                                       short_repr, UserFileError)

# Published ids are uint8 and one value is the ignore value: at most 255 other classes.
MAX_PUBLISHED_CLASSES = 255
DEFAULT_IGNORE_VALUE = 255
MAX_LABEL_VALUE = 255
MAX_CHANNEL = 255
RGB_CHANNELS = 3
# The name LabelInfo and the class table give the ignore value.
IGNORE_NAME = 'ignore'
_TOP_KEYS = ('groups', 'unlisted', 'ignore_value')
_GROUP_KEYS = ('name', 'color', 'members')


class LabelMapError(UserFileError):
    """A label map that cannot be used with the model; the message names file and group."""


@dataclass(frozen=True)
class LabelGroup:
    """One published class: its ``name``, RGB ``color`` and the model class ids it holds."""

    name: str
    color: tuple[int, int, int]
    members: tuple[int, ...]


@dataclass(frozen=True)
class LabelMap:
    """
    The published classes as groups of a model's classes, read from ``source``.

    ``groups`` are the published classes in id order (the file's groups, then the kept
    classes with ``unlisted: keep``); model classes in none of them are published as
    ``ignore_value``.
    """

    source: str
    model_classes: tuple[str, ...]
    groups: tuple[LabelGroup, ...]
    ignore_value: int
    unlisted: Unlisted

    @property
    def names(self) -> tuple[str, ...]:
        """Return the published class names, in id order."""
        return tuple(group.name for group in self.groups)

    @property
    def palette(self) -> np.ndarray:
        """Return the published classes' colours, G x 3 uint8 RGB."""
        return np.asarray([group.color for group in self.groups], np.uint8).reshape(-1, 3)

    @property
    def ignored(self) -> tuple[int, ...]:
        """Return the model class ids published as the ignore value, in the model's order."""
        grouped = {member for group in self.groups for member in group.members}
        return tuple(index for index in range(len(self.model_classes)) if index not in grouped)

    def lookup(self) -> np.ndarray:
        """Return the uint8 published id of each model class id (C values)."""
        table = np.full(len(self.model_classes), self.ignore_value, np.uint8)
        for published, group in enumerate(self.groups):
            table[list(group.members)] = published
        return table

    def member_names(self, published: int) -> tuple[str, ...]:
        """Return the model class names of published id ``published`` (or the ignore value)."""
        if published == self.ignore_value:
            members = self.ignored
        else:
            members = self.groups[published].members
        return tuple(self.model_classes[index] for index in members)

    def dataset(self, model_dataset: Any) -> Any:
        """
        Return ``model_dataset`` (a registry ``Dataset``) as published under this map.

        Its classes and palette are the groups'; its void class is the ignore value, which
        the class table and LabelInfo list beside the groups.
        """
        return replace(model_dataset, name=f'{model_dataset.name} grouped by '
                       f'{Path(self.source).name}', classes=self.names, palette=self.palette,
                       void_class=self.ignore_value, void_in_labels=True)

    def table(self) -> list[tuple[str, str, str]]:
        """Return (id, name, model classes) rows of the published classes, ignore last."""
        rows = [(str(index), group.name, ', '.join(self.member_names(index)))
                for index, group in enumerate(self.groups)]
        rows.append((str(self.ignore_value), IGNORE_NAME,
                     ', '.join(self.member_names(self.ignore_value)) or '(none)'))
        return rows


def _fail(source: str, where: str, text: str) -> LabelMapError:
    return LabelMapError(f'{source}: {where}: {text}')


def _too_many(source: str, count: int) -> LabelMapError:
    return _fail(source, 'groups', f'{count} published classes; at most '
                                   f'{MAX_PUBLISHED_CLASSES} fit in uint8 labels beside the '
                                   'ignore value')


def _group_name(source: str, where: str, entry: Mapping[str, Any]) -> str:
    name = entry.get('name')
    if not isinstance(name, str) or not name.strip():
        raise _fail(source, where, f'expected a non-empty name (a string), got '
                                   f'{short_repr(name)}')
    return name


def _color(source: str, where: str, value: Any) -> tuple[int, int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != RGB_CHANNELS
            or any(isinstance(c, bool) or not isinstance(c, int) for c in value)):
        raise _fail(source, where, f'expected color: [R, G, B], three integers 0-{MAX_CHANNEL};'
                                   f' got {short_repr(value)}')
    if any(not 0 <= c <= MAX_CHANNEL for c in value):
        raise _fail(source, where, f'color {short_repr(value)} is out of range: each channel '
                                   f'must be 0-{MAX_CHANNEL}')
    return (int(value[0]), int(value[1]), int(value[2]))


def _members(source: str, where: str, value: Any, classes: Sequence[str],
             owner: dict[int, str], name: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise _fail(source, where, 'the group is empty: expected members: a non-empty list of '
                                   f"the model's class names; got {short_repr(value)}")
    ids = []
    for member in value:
        if not isinstance(member, str) or member not in classes:
            raise _fail(source, where, f'unknown class {short_repr(member)}; the model'
                                       f"'s classes are: {', '.join(classes)}")
        index = classes.index(member)
        if index in owner:
            other = owner[index]
            text = ('twice in this group' if other == name
                    else f'already in group {other!r}')
            raise _fail(source, where, f'class {member!r} is {text}; a class belongs to one '
                                       'group at most')
        owner[index] = name
        ids.append(index)
    return tuple(ids)


def parse_label_map(document: Any, source: str, classes: Sequence[str],
                    palette: Optional[np.ndarray] = None, *,
                    lines: Sequence[int] = ()) -> LabelMap:
    """
    Return the label map of a parsed YAML ``document`` for a model of ``classes``.

    ``palette`` (C x 3) colours the classes kept by ``unlisted: keep``; ``lines``: the line
    of each group in ``source``, named by the errors. Raises :class:`LabelMapError` naming
    ``source``, the line and group and what was expected.
    """
    classes = tuple(classes)
    if not isinstance(document, dict):
        raise _fail(source, 'top level', 'expected a mapping with groups: (a list), and '
                                         f'optionally unlisted: and ignore_value:; got '
                                         f'{type(document).__name__}')
    unknown = sorted(str(key) for key in document if key not in _TOP_KEYS)
    if unknown:
        raise _fail(source, 'top level', f'unknown keys {", ".join(unknown)}; expected '
                                         f'{", ".join(_TOP_KEYS)}')
    unlisted = document.get('unlisted', Unlisted.IGNORE.value)
    if unlisted not in Unlisted.values():
        raise _fail(source, 'unlisted', f'expected one of {", ".join(Unlisted.values())}; got '
                                        f'{short_repr(unlisted)}')
    ignore_value = document.get('ignore_value', DEFAULT_IGNORE_VALUE)
    if (isinstance(ignore_value, bool) or not isinstance(ignore_value, int)
            or not 0 <= ignore_value <= MAX_LABEL_VALUE):
        raise _fail(source, 'ignore_value', f'expected an integer 0-{MAX_LABEL_VALUE}; got '
                                            f'{short_repr(ignore_value)}')
    entries = document.get('groups')
    if not isinstance(entries, list) or not entries:
        raise _fail(source, 'groups', 'expected a non-empty list of groups, each '
                                      '{name: ..., color: [R, G, B], members: [...]}; got '
                                      f'{short_repr(entries)}')
    if len(entries) > MAX_PUBLISHED_CLASSES:
        raise _too_many(source, len(entries))
    groups: list[LabelGroup] = []
    owner: dict[int, str] = {}
    for index, entry in enumerate(entries):
        line = f'line {lines[index]}, ' if index < len(lines) else ''
        where = f'{line}group {index}'
        if not isinstance(entry, dict):
            raise _fail(source, where, 'expected a mapping {name: ..., color: [R, G, B], '
                                       f'members: [...]}}; got {short_repr(entry)}')
        name = _group_name(source, where, entry)
        where = f'{line}group {index} ({name!r})'
        extra = sorted(str(key) for key in entry if key not in _GROUP_KEYS)
        if extra:
            raise _fail(source, where, f'unknown keys {", ".join(extra)}; expected '
                                       f'{", ".join(_GROUP_KEYS)}')
        if any(group.name == name for group in groups):
            raise _fail(source, where, f'a second group named {name!r}; group names must be '
                                       'unique')
        color = _color(source, where, entry.get('color'))
        groups.append(LabelGroup(name, color, _members(source, where, entry.get('members'),
                                                       classes, owner, name)))
    if unlisted == Unlisted.KEEP:
        colours = (np.asarray(palette, np.uint8).reshape(-1, RGB_CHANNELS) if palette is not None
                   else np.zeros((len(classes), RGB_CHANNELS), np.uint8))
        for index, name in enumerate(classes):
            if index in owner:
                continue
            if any(group.name == name for group in groups):
                raise _fail(source, f'class {name!r}',
                            'kept by unlisted: keep, but a group has its name; names must be '
                            'unique')
            groups.append(LabelGroup(name, tuple(int(c) for c in colours[index]), (index,)))
    if len(groups) > MAX_PUBLISHED_CLASSES:
        raise _too_many(source, len(groups))
    if ignore_value < len(groups):
        raise _fail(source, 'ignore_value', f'{ignore_value} is the id of group '
                                            f'{groups[ignore_value].name!r}; expected a value '
                                            f'from {len(groups)} to {MAX_LABEL_VALUE}')
    return LabelMap(str(source), classes, tuple(groups), ignore_value, Unlisted(unlisted))


def read_label_map(path: Path, classes: Sequence[str],
                   palette: Optional[np.ndarray] = None) -> LabelMap:
    """Return the label map in the YAML file ``path`` for a model of ``classes``."""
    path = Path(path)
    text = read_user_text(path)
    return parse_label_map(parse_yaml(text, path), str(path), classes, palette,
                           lines=sequence_item_lines(text, 'groups'))


def load_for_dataset(path: Path, dataset: Any) -> LabelMap:
    """Return the label map in ``path`` for a registry ``Dataset`` (names and colours)."""
    return read_label_map(path, dataset.classes, dataset.palette)
