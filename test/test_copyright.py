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
Every Python file and shell script starts with the project's Apache-2.0 header.

ament_copyright is not published on PyPI, so this is the same check written for our header:
the copyright line (any year or year range) followed by the Apache-2.0 notice, optionally
after a shebang line.
"""

import os
from pathlib import Path
import re
from typing import Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
COPYRIGHT = re.compile(r'# Copyright \d{4}(-\d{4})? The espnet_ros Authors')
LICENSE_NOTICE = """#
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
""".splitlines()
# Build and install trees of an in-place colcon build are not ours to check.
SKIPPED_DIRS = {'build', 'install', 'log'}


def source_files() -> Iterator[Path]:
    """Yield the repository's Python files and shell scripts, outside hidden and build dirs."""
    for dirpath, dirnames, filenames in os.walk(REPO_ROOT):
        dirnames[:] = sorted(d for d in dirnames
                             if not d.startswith(('.', '_')) and d not in SKIPPED_DIRS)
        for name in sorted(filenames):
            if name.endswith(('.py', '.sh')):
                yield Path(dirpath) / name
    yield REPO_ROOT / '.ci' / 'run'


def header_problem(path: Path) -> str:
    """Return what is wrong with the file's header, or '' when it is right."""
    lines = path.read_text(encoding='utf-8').splitlines()
    if lines and lines[0].startswith('#!'):
        lines = lines[1:]
    if not lines or not COPYRIGHT.fullmatch(lines[0]):
        return 'first line is not "# Copyright <year> The espnet_ros Authors"'
    if lines[1:1 + len(LICENSE_NOTICE)] != LICENSE_NOTICE:
        return 'the Apache-2.0 notice does not follow the copyright line'
    return ''


@pytest.mark.copyright
@pytest.mark.linter
def test_copyright() -> None:
    """No Python file or shell script lacks the header."""
    checked = [p for p in source_files() if p.is_file()]
    assert REPO_ROOT / 'setup.py' in checked
    problems = [f'{p.relative_to(REPO_ROOT)}: {header_problem(p)}'
                for p in checked if header_problem(p)]
    assert not problems, 'Files without the Apache-2.0 header:\n' + '\n'.join(problems)
