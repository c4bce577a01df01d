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
The package's rooms and the direction of their dependencies, read from the imports.

The core rooms (networks, zoo, runtime, imaging, streaming and whatever new core room comes)
never import ROS or the front rooms (ros, tools, cli); front rooms use the core and never
each other, except that tools may use ros's message helpers; no module imports itself
back through a cycle. Building an engine changes nothing process-wide. Private APIs of the
dependencies (``torch._...``, ``rclpy.impl``) are used in espnet_ros/compat.py only, which
may import ROS inside its functions (for the node), never at module level.
"""

import ast
from pathlib import Path
import subprocess
import sys

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / 'espnet_ros'
FRONT_ROOMS = {'ros', 'tools', 'cli'}
# A front room may import these other front modules: the command line parses arguments and
# runs the tools; the tools use ros's message helpers. Nothing else crosses.
ALLOWED_FRONT_IMPORTS = {'cli': {'espnet_ros.tools'},
                         'tools': {'espnet_ros.ros.messages', 'espnet_ros.ros.qos'}}
ROS_MODULE_PREFIXES = ('rclpy', 'rcl_interfaces', 'launch', 'launch_ros', 'message_filters',
                       'sensor_msgs', 'std_msgs', 'diagnostic_msgs', 'lifecycle_msgs',
                       'vision_msgs', 'builtin_interfaces', 'sensor_msgs_py')


def module_name(path: Path) -> str:
    """Return the dotted module name of a file in the package."""
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imports_of(path: Path) -> set[str]:
    """Return every module a file imports, at any depth (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f'{node.module}.{alias.name}' for alias in node.names)
    return found


def room(module: str) -> str:
    """Return the room of a package module: its first level below espnet_ros."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else ''


MODULES = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob('*.py'))}
COMPAT = 'espnet_ros.compat'
PRIVATE_MODULE_PREFIXES = ('torch._', 'rclpy.impl')


def top_level_imports(path: Path) -> set[str]:
    """Return the modules a file imports outside functions (at import time)."""
    found: set[str] = set()
    pending = list(ast.parse(path.read_text()).body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        pending.extend(ast.iter_child_nodes(node))
    return found


def private_uses(source: str) -> list[str]:
    """
    Return each use of a dependency's private API in ``source``, with its line.

    ``torch._x`` attribute access (at any depth: ``torch.ops.mkldnn._x`` too; dunders such
    as ``torch.__version__`` are public), and imports
    of ``torch._x`` or ``rclpy.impl`` modules.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        dunder = node.attr.endswith('__') if isinstance(node, ast.Attribute) else False
        if isinstance(node, ast.Attribute) and node.attr.startswith('_') and not dunder:
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id == 'torch':
                found.append(f'line {node.lineno}: torch...{node.attr}')
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        found.extend(f'line {node.lineno}: import {name}' for name in names
                     if name.startswith(PRIVATE_MODULE_PREFIXES))
    return found


@pytest.mark.parametrize('module', sorted(MODULES))
def test_core_rooms_import_no_ros_and_no_front_room(module: str) -> None:
    if room(module) in FRONT_ROOMS:
        pytest.skip('front room')
    # compat holds the node's rclpy workarounds: ROS inside its functions only.
    imported = (top_level_imports if module == COMPAT else imports_of)(MODULES[module])
    ros = sorted(name for name in imported if name.split('.')[0] in ROS_MODULE_PREFIXES)
    front = sorted(name for name in imported if name.startswith('espnet_ros.')
                   and room(name) in FRONT_ROOMS)
    assert not ros, f'{module} is core but imports ROS: {ros}'
    assert not front, f'{module} is core but imports a front room: {front}'


@pytest.mark.parametrize('module', sorted(m for m in MODULES if room(m) in FRONT_ROOMS))
def test_front_rooms_do_not_use_each_other(module: str) -> None:
    own = room(module)
    allowed = ALLOWED_FRONT_IMPORTS.get(own, set())
    others = sorted(name for name in imports_of(MODULES[module])
                    if name.startswith('espnet_ros.') and room(name) in FRONT_ROOMS
                    and room(name) != own and not any(
                        name == a or name.startswith(a + '.') for a in allowed))
    assert not others, f'{module} ({own}/) reaches into another front room: {others}'


def test_no_import_cycles() -> None:
    graph = {module: {name for name in imports_of(path) if name in MODULES and name != module}
             for module, path in MODULES.items()}
    # A package's __init__ importing its own modules is how packages export; not a cycle.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not module.endswith('__init__')}
    visiting: list[str] = []
    done: set[str] = set()

    def visit(module: str) -> None:
        if module in done:
            return
        assert module not in visiting, 'import cycle: ' + ' -> '.join(
            visiting[visiting.index(module):] + [module])
        visiting.append(module)
        for target in sorted(graph[module]):
            if not target.startswith(module + '.'):
                visit(target)
        visiting.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_building_an_engine_changes_nothing_process_wide(tmp_path: Path) -> None:
    """The README's snippet must leave malloc and the GIL switch interval as they were."""
    code = """
import ctypes, sys
import numpy as np
from espnet_ros.runtime.engine import EngineConfig, SegmentationEngine
from espnet_ros.zoo.registry import get_spec
interval = sys.getswitchinterval()
spec = get_spec('espnet_p2q3_cityscapes')
engine = SegmentationEngine(spec, spec.build(), EngineConfig(input_size=(64, 32)))
engine.segment(np.zeros((32, 64, 3), np.uint8))
assert sys.getswitchinterval() == interval, sys.getswitchinterval()
libc = ctypes.CDLL('libc.so.6')
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks',
        'fordblks', 'keepcost')]
libc.mallinfo2.restype = Info
big = np.ones(64 << 20, np.uint8)  # glibc maps a block this large by itself by default
assert libc.mallinfo2().hblkhd >= big.nbytes, 'malloc no longer maps large blocks'
print('ok')
"""
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and 'ok' in result.stdout, result.stderr[-2000:]


@pytest.mark.parametrize('module', sorted(m for m in MODULES if m != COMPAT))
def test_private_apis_only_through_compat(module: str) -> None:
    uses = private_uses(MODULES[module].read_text())
    assert not uses, f'{module} uses private APIs outside {COMPAT}: {uses}'


def test_the_private_api_check_can_fail() -> None:
    source = ('import torch\nfrom torch._inductor import config\n'
              'from rclpy.impl.implementation_singleton import rclpy_implementation\n'
              'torch._inductor.aoti_load_package("x")\ntorch.ops.mkldnn._is_x()\n'
              'torch.nn.Module\ntorch.__version__\n')
    assert len(private_uses(source)) == 4, private_uses(source)
    assert private_uses(MODULES[COMPAT].read_text()), 'compat.py holds them all'
