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
YAML and JSON written by users, read with bounds: one loader for every such file.

Manifests of user model folders, class tables, the compiled-graph cache's sidecars: each is
read here, and only here. A file is refused, with its name and the reason, when it is larger
than :data:`MAX_DOCUMENT_BYTES`, nests deeper than :data:`MAX_DEPTH`, or (YAML) uses more
than :data:`MAX_ALIASES` aliases or expands to more than :data:`MAX_NODES` nodes: a few
hundred bytes of aliases can otherwise stand for gigabytes, and deep nesting ends in a
``RecursionError``. Errors never print the document; :func:`short_repr` bounds any value an
error message quotes.
"""

import json
import os
from pathlib import Path
import re
import reprlib
import stat
from typing import Any, Union

import yaml

MAX_DOCUMENT_BYTES = 1 << 20  # manifests and class tables are a few KiB
MAX_DEPTH = 32
MAX_ALIASES = 64
MAX_NODES = 200_000
# How much of a value an error message quotes.
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxdict = _REPR.maxtuple = 6
_REPR.maxlevel = 3
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


class UserFileError(ValueError):
    """A user's YAML or JSON file that cannot be read safely; the message names the file."""


def short_repr(value: Any) -> str:
    """Return a bounded repr of ``value`` for error messages (never a whole document)."""
    return _REPR.repr(value)


def read_text(path: Path, *, limit: int = MAX_DOCUMENT_BYTES) -> str:
    """Return a text file's contents, refusing one larger than ``limit`` bytes."""
    # Non-blocking: a FIFO in place of the file must not hang the reader.
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), 'rb') as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise UserFileError(f'{path}: not a regular file')
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise UserFileError(f'{path}: larger than {limit} bytes; not read')
    try:
        return data.decode()
    except UnicodeDecodeError as error:
        raise UserFileError(f'{path}: not UTF-8 text ({error.reason} at byte '
                            f'{error.start})') from None


def _json_depth(text: str) -> int:
    depth = deepest = 0
    for character in _JSON_STRING.sub('""', text):
        if character in '[{':
            depth += 1
            deepest = max(deepest, depth)
        elif character in ']}':
            depth -= 1
    return deepest


def parse_json(text: str, source: Union[str, Path]) -> Any:
    """Return the JSON document ``text`` (read from ``source``), or raise naming it."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise UserFileError(f'{source}: larger than {MAX_DOCUMENT_BYTES} bytes; not read')
    if _json_depth(text) > MAX_DEPTH:
        raise UserFileError(f'{source}: nested deeper than {MAX_DEPTH} levels; not read')
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        detail = ' '.join(str(error).split())[:200]
        raise UserFileError(f'{source}: not valid JSON: {detail}') from None


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting aliases, nesting and the expanded size as it composes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise yaml.YAMLError(f'more than {MAX_ALIASES} aliases')
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise yaml.YAMLError(f'nested deeper than {MAX_DEPTH} levels')
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _expanded_nodes(node: yaml.Node, sizes: dict[int, int], depth: int = 0) -> int:
    """Return how many nodes ``node`` stands for once its aliases are expanded."""
    if id(node) in sizes:
        return sizes[id(node)]
    if depth > MAX_DEPTH:
        raise yaml.YAMLError(f'nested deeper than {MAX_DEPTH} levels')
    sizes[id(node)] = MAX_NODES + 1  # a node reached again while counting: a cycle
    children: list = []
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    total = 1
    for child in children:
        total += _expanded_nodes(child, sizes, depth + 1)
        if total > MAX_NODES:
            break
    sizes[id(node)] = total
    return total


def parse_yaml(text: str, source: Union[str, Path]) -> Any:
    """Return the YAML document ``text`` (read from ``source``), or raise naming it."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise UserFileError(f'{source}: larger than {MAX_DOCUMENT_BYTES} bytes; not read')
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_nodes(node, {}) > MAX_NODES:
            raise yaml.YAMLError(f'expands to more than {MAX_NODES} values')
        return loader.construct_document(node)
    except (yaml.YAMLError, RecursionError) as error:
        # PyYAML's marks quote the source line; never the expanded structure.
        detail = ' '.join(str(error).split())[:300]
        raise UserFileError(f'{source}: not a YAML document this tool reads: {detail}'
                            ) from None
    finally:
        loader.dispose()


def sequence_item_lines(text: str, key: str) -> list[int]:
    """
    Return the 1-based line of each item of sequence ``key`` in a YAML mapping ``text``.

    For messages that name a line; call it on a text :func:`parse_yaml` has read, so the same
    bounds hold. Empty when the document holds no such sequence.
    """
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
    except (yaml.YAMLError, RecursionError):
        return []
    finally:
        loader.dispose()
    if not isinstance(node, yaml.MappingNode):
        return []
    for name, value in node.value:
        if (isinstance(name, yaml.ScalarNode) and name.value == key
                and isinstance(value, yaml.SequenceNode)):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def read_user_text(path: Path) -> str:
    """Return a user's text file read with the bounds above, or raise naming it."""
    try:
        return read_text(path)
    except OSError as error:
        raise UserFileError(f'{path}: cannot read it: {error.strerror or error}') from None


def read_document(path: Path) -> Any:
    """Return the document of a ``.json`` file, or of a YAML file (any other suffix)."""
    text = read_user_text(path)
    if path.suffix.lower() == '.json':
        return parse_json(text, path)
    return parse_yaml(text, path)


def read_json(path: Path) -> Any:
    """Return the document of a JSON file read with the bounds above, or raise naming it."""
    try:
        text = read_text(path)
    except OSError as error:
        raise UserFileError(f'{path}: cannot read it: {error.strerror or error}') from None
    return parse_json(text, path)
