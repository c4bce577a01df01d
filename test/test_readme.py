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
Every code block of the README runs as written, in the shell the quick start leaves.

A bash block whose first line is a comment starting ``# needs``, ``# takes`` or ``# runs
until`` says in the README why it is not run here (a ROS 2 install, the network, TensorRT, a
long run, a node that runs until Ctrl-C); it is only parsed (``bash -n``). Every other block
runs from the repository root: bash after ``source scripts/activate.sh``, Python in the
venv. Nothing a block writes may show up in ``git status``: outputs belong in ``out/``.
"""

from dataclasses import dataclass
from pathlib import Path
import re
import subprocess
import sys
import textwrap

import pytest
from ros_helpers import child_env, REPO_ROOT

README = REPO_ROOT / 'README.md'
FENCE = re.compile(r'^(?P<indent>[ ]*)```(?P<language>\w*)\n(?P<body>.*?)^(?P=indent)```$',
                   re.MULTILINE | re.DOTALL)
NOT_RUN = re.compile(r'# (needs|takes|runs until) \S')
BLOCK_TIMEOUT_S = 1800  # eval over 101 frames on a two-core machine shared with other jobs


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    line: int
    language: str
    code: str

    @property
    def reason_not_run(self) -> str:
        """Return the block's own first-line reason for not running here, or ''."""
        first = self.code.splitlines()[0]
        return first if NOT_RUN.match(first) else ''


def readme_blocks() -> list[Block]:
    """Return the README's fenced code blocks, dedented (list items indent theirs)."""
    text = README.read_text()
    return [Block(text.count('\n', 0, match.start()) + 1, match['language'],
                  textwrap.dedent(match['body']))
            for match in FENCE.finditer(text)]


BLOCKS = readme_blocks()
RUN = [block for block in BLOCKS if not block.reason_not_run]
PARSED = [block for block in BLOCKS if block.reason_not_run]


def block_id(block: Block) -> str:
    """Name a block by its README line and first command."""
    return f'line{block.line}-{block.code.split()[0]}'


def git_status() -> set[str]:
    """Return the changed and untracked files git sees (ignored ones are not listed)."""
    done = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=all'],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return set(done.stdout.splitlines())


def test_blocks_are_bash_or_python_and_most_run() -> None:
    """Every block names its language; only bash blocks may be left unrun, with a reason."""
    assert BLOCKS, 'no code blocks found in README.md'
    assert {block.language for block in BLOCKS} <= {'bash', 'python'}, [
        (block.line, block.language) for block in BLOCKS]
    assert all(block.language == 'bash' for block in PARSED)
    assert any(block.language == 'python' for block in RUN)
    quick_start = RUN[0].code
    assert './scripts/run_demo.sh' in quick_start and 'source scripts/activate.sh' in quick_start


@pytest.mark.parametrize('block', PARSED, ids=block_id)
def test_unrun_block_parses(block: Block) -> None:
    """A block not run here is still valid bash."""
    done = subprocess.run(['bash', '-n'], input=block.code, capture_output=True, text=True)
    assert done.returncode == 0, f'README line {block.line}: {done.stderr}'


@pytest.mark.parametrize('block', RUN, ids=block_id)
def test_block_runs_as_written(block: Block, weights_dir: Path) -> None:
    """The block succeeds from the repository root and leaves its outputs where git ignores."""
    before = git_status()
    if block.language == 'python':
        command = [sys.executable, '-c', block.code]
    else:
        command = ['bash', '-c', 'source scripts/activate.sh > /dev/null && set -e\n'
                   + block.code]
    done = subprocess.run(command, cwd=REPO_ROOT, env=child_env(weights_dir),
                          capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    assert done.returncode == 0, (f'README line {block.line} failed ({done.returncode}):\n'
                                  f'{done.stdout[-3000:]}\n{done.stderr[-3000:]}')
    assert git_status() - before == set(), 'the block wrote files that git does not ignore'
    if './scripts/run_demo.sh' in block.code:
        # The demo reports what the node did with the camera's frames.
        assert re.search(r'the node took \d+ camera frames, processed \d+ and dropped \d+',
                         done.stdout), done.stdout[-3000:]


def test_image_player_table_matches_its_declarations() -> None:
    """The README's image player table lists every parameter the node declares, with defaults."""
    source = (REPO_ROOT / 'espnet_ros' / 'ros' / 'image_player.py').read_text()
    declared = dict(re.findall(r"declare_parameter\('(\w+)', ([^)]+)\)", source))
    section = README.read_text().split('### The image player', 1)[1].split('\n## ', 1)[0]
    documented = {}
    for row in re.findall(r'^\| `([^|]+)` \| \w+ \| `([^`]*)` \|', section, re.MULTILINE):
        names, default = row
        for name in names.replace('`', '').split(', '):
            documented[name] = default
    assert set(documented) == set(declared), (documented, declared)
    for name, default in declared.items():
        assert documented[name].lower() == default.lower(), name
