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
The launch files, config/segment.yaml and the README agree with the node's declarations.

These checks read the files (the launch files as syntax trees) and need no launch install;
test_launch_files.py runs the launch files for real.
"""

import ast
from pathlib import Path
import re
from typing import Any, Optional

import pytest
import yaml

from espnet_ros.ros.outputs import OUTPUT_TOPICS
from espnet_ros.ros.parameter_table import BY_NAME, check_parameter, PARAMETERS, typed_value
from espnet_ros.runtime.options import Output
from espnet_ros.zoo.registry import DEFAULT_MODEL, get_spec

REPO_ROOT = Path(__file__).resolve().parents[1]
LAUNCH_DIR = REPO_ROOT / 'launch'
LAUNCH_FILES = sorted(LAUNCH_DIR.glob('*.launch.py'))
# The node's camera inputs (relative names, what users remap) and its other outputs.
INPUT_TOPICS = {'image', 'image/compressed', 'camera_info', 'depth/image', 'depth/camera_info'}
OTHER_OUTPUTS = {'segmentation/classes', 'segmentation/label_info', '/diagnostics',
                 # one per name of points_groups, as the README writes the family
                 OUTPUT_TOPICS[Output.POINTS] + '/<name>'}
TYPE_WORDS = {str: ('str', 'string'), int: ('int', 'integer'), float: ('float', 'double'),
              bool: ('bool', 'boolean'), tuple: ('string array', 'str[]')}


def tree(path: Path) -> ast.Module:
    """Return the syntax tree of a source file."""
    return ast.parse(path.read_text(), str(path))


def calls(module: ast.AST, name: str) -> list[ast.Call]:
    """Return the calls of a function or class called ``name`` (plain or attribute)."""
    return [node for node in ast.walk(module) if isinstance(node, ast.Call) and (
        getattr(node.func, 'id', None) == name or getattr(node.func, 'attr', None) == name)]


def keyword(call: ast.Call, name: str) -> Optional[ast.expr]:
    """Return the value of keyword argument ``name`` of a call, or None."""
    return next((k.value for k in call.keywords if k.arg == name), None)


def assigned(module: ast.Module, name: str) -> ast.expr:
    """Return the expression assigned to module-level ``name``."""
    for node in module.body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == name
                                                for t in node.targets):
            return node.value
    raise AssertionError(f'{name} is not assigned at module level')


def test_launch_remappings_cover_the_node_inputs() -> None:
    """segment.launch.py remaps exactly the topics the node subscribes to."""
    module = tree(LAUNCH_DIR / 'segment.launch.py')
    (node_call,) = [call for call in calls(module, 'Node')
                    if ast.literal_eval(keyword(call, 'executable')) == 'segmenter']
    remapped = {ast.literal_eval(pair.elts[0]) for pair in keyword(node_call, 'remappings').elts}
    assert remapped == INPUT_TOPICS


def test_demo_gives_the_player_only_its_parameters() -> None:
    """demo.launch.py sets only parameters the image player declares, with their types."""
    demo = tree(LAUNCH_DIR / 'demo.launch.py')
    player_source = tree(REPO_ROOT / 'espnet_ros' / 'ros' / 'image_player.py')
    player_defaults = {call.args[0].value: ast.literal_eval(call.args[1])
                       for call in calls(player_source, 'declare_parameter')}
    (player,) = [call for call in calls(demo, 'Node')
                 if ast.literal_eval(keyword(call, 'executable')) == 'image_player']
    (given,) = keyword(player, 'parameters').elts
    assert {ast.literal_eval(key) for key in given.keys} <= set(player_defaults)


def test_launched_executables_and_files_are_installed() -> None:
    """Every executable a launch file starts is a console script; every file it names exists."""
    setup = tree(REPO_ROOT / 'setup.py')
    (setup_call,) = calls(setup, 'setup')
    scripts = ast.literal_eval(keyword(setup_call, 'entry_points'))['console_scripts']
    ours = {entry.split('=')[0].strip() for entry in scripts}
    for path in LAUNCH_FILES:
        for call in calls(tree(path), 'Node'):
            if ast.literal_eval(keyword(call, 'package')) == 'espnet_ros':
                assert ast.literal_eval(keyword(call, 'executable')) in ours, path.name
        for join in calls(tree(path), 'PathJoinSubstitution'):
            parts = join.args[0].elts[1:]
            if all(isinstance(part, ast.Constant) for part in parts):
                relative = Path(*(part.value for part in parts))
                assert (REPO_ROOT / relative).is_file(), f'{path.name} names {relative}'


@pytest.mark.parametrize('path', LAUNCH_FILES, ids=lambda path: path.name)
def test_launch_file_compiles_without_eval(path: Path) -> None:
    """A launch file compiles and never evaluates text as code."""
    compile(path.read_text(), str(path), 'exec')
    forbidden = [call.func.id for call in ast.walk(tree(path)) if isinstance(call, ast.Call)
                 and getattr(call.func, 'id', None) in ('eval', 'exec', '__import__')]
    assert not forbidden, f'{path.name} calls {forbidden}'


def test_params_file_names_every_parameter_with_valid_values() -> None:
    """config/segment.yaml sets every declared parameter, only those, with valid values."""
    content = yaml.safe_load((REPO_ROOT / 'config' / 'segment.yaml').read_text())
    assert list(content) == ['/**'] and list(content['/**']) == ['ros__parameters']
    values = content['/**']['ros__parameters']
    assert set(values) == {spec.name for spec in PARAMETERS}
    for name, value in values.items():
        assert check_parameter(name, value) is None, check_parameter(name, value)


def markdown_table(heading: str) -> Optional[list[dict[str, str]]]:
    """Return the rows of the first table under ``## heading`` in README.md, or None."""
    readme = REPO_ROOT / 'README.md'
    if not readme.is_file():
        return None
    section = re.search(rf'^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)', readme.read_text(),
                        re.MULTILINE | re.DOTALL)
    lines = [line.strip() for line in (section[1] if section else '').splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith('|')), None)
    if start is None:
        return None
    block = []
    for line in lines[start:]:
        if not line.startswith('|'):
            break
        block.append([cell.strip() for cell in re.split(r'(?<!\\)\|', line.strip('|'))])
    header, rows = [cell.lower() for cell in block[0]], block[2:]
    return [dict(zip(header, row)) for row in rows]


def first_column_names(rows: list[dict[str, str]]) -> list[str]:
    """Return the backticked names of a table's first column."""
    names = []
    for row in rows:
        cell = next(iter(row.values()))
        match = re.fullmatch(r'`([^`]+)`', cell)
        assert match, f'first cell {cell!r} is not a backticked name'
        names.append(match[1])
    return names


def column(row: dict[str, str], word: str) -> Optional[str]:
    """Return the cell of the first column whose header contains ``word``."""
    return next((cell for name, cell in row.items() if word in name), None)


def readme_value(cell: str) -> Any:
    """Return a README cell's value: backticks stripped, read as YAML ('' when empty)."""
    text = cell.strip().strip('`').strip()
    return '' if text in ('', "''", '""', '(empty)') else yaml.safe_load(text)


def test_readme_parameter_table_matches_the_node() -> None:
    """The README's parameter table lists every parameter, with its default and type."""
    rows = markdown_table('Parameters')
    if rows is None:
        pytest.skip('README.md has no table under "## Parameters" yet')
    assert sorted(first_column_names(rows)) == sorted(spec.name for spec in PARAMETERS)
    for name, row in zip(first_column_names(rows), rows):
        spec = BY_NAME[name]
        default = column(row, 'default')
        if default is not None:
            assert typed_value(name, readme_value(default)) == spec.default, (
                f'{name}: README says {default}')
        kind = column(row, 'type')
        if kind is not None:
            words = TYPE_WORDS[type(spec.default)]
            assert kind.strip('`').lower() in words, f'{name}: README type {kind}'


def test_readme_topic_table_matches_the_node() -> None:
    """The README's topic table lists exactly the node's inputs and outputs."""
    rows = markdown_table('Topics')
    if rows is None:
        pytest.skip('README.md has no table under "## Topics" yet')
    node_topics = INPUT_TOPICS | set(OUTPUT_TOPICS.values()) | OTHER_OUTPUTS
    documented = set(first_column_names(rows))
    assert {topic.lstrip('/') for topic in documented} == {
        topic.lstrip('/') for topic in node_topics}


def test_rviz_config_topics_are_the_node_outputs_relative() -> None:
    """segment.rviz names node outputs by relative names, so rviz2's namespace places them."""
    config = yaml.safe_load((REPO_ROOT / 'config' / 'segment.rviz').read_text())
    topics = [display['Topic']['Value']
              for display in config['Visualization Manager']['Displays'] if 'Topic' in display]
    assert topics and set(topics) <= set(OUTPUT_TOPICS.values()), topics


def test_nav2_semantic_layer_example_names_every_class_once() -> None:
    """config/nav2_semantic_segmentation.yaml covers our LabelInfo's classes, each once."""
    config = yaml.safe_load((REPO_ROOT / 'config' / 'nav2_semantic_segmentation.yaml')
                            .read_text())
    layer = config['local_costmap']['local_costmap']['ros__parameters'][
        'semantic_segmentation_layer']
    camera = layer[layer['observation_sources']]
    listed = [name for kind in camera['class_types'] for name in camera[kind]['classes']]
    assert sorted(listed) == sorted(get_spec(DEFAULT_MODEL).dataset.classes)
    assert camera['pointcloud_topic'].endswith(OUTPUT_TOPICS['points'])
    assert camera['confidence_topic'].endswith(OUTPUT_TOPICS['confidence'])
    assert camera['segmentation_topic'].endswith(OUTPUT_TOPICS['labels'])
