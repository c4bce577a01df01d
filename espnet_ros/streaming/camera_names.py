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
The names of the cameras one segmenter serves (its ``cameras`` parameter); no ROS.

Each name becomes the namespace of one camera's topics (``front/image``,
``front/segmentation/labels``), so it must be a relative ROS name: tokens of letters,
digits and underscores that do not start with a digit, joined by single slashes. Relative,
so that the node's namespace and remappings apply as they do to the single camera's topics.
"""

import re
from typing import Optional, Sequence

MAX_CAMERAS = 16  # more than a robot carries; a longer list is a mistake
# One token of a ROS name (REP 144 / rcl's validation), without '~' or substitutions.
_TOKEN = r'[A-Za-z_][A-Za-z0-9_]*'
_NAME = re.compile(rf'{_TOKEN}(/{_TOKEN})*')


def camera_name_error(name: str) -> Optional[str]:
    """Return why ``name`` cannot name a camera's topics, or None."""
    if not isinstance(name, str):
        return f'camera names must be strings, got {type(name).__name__} {name!r}'
    if not name:
        return 'a camera name is empty'
    if name.startswith(('/', '~')):
        return (f'camera name {name!r} must be relative (no leading / or ~), so that the '
                'namespace and remappings apply')
    if not _NAME.fullmatch(name) or '__' in name:
        return (f'camera name {name!r} is not a valid ROS name: letters, digits and single '
                'underscores, not starting with a digit, tokens joined by single slashes')
    return None


def cameras_error(names: Sequence[str]) -> Optional[str]:
    """Return why ``names`` cannot be the cameras of one node, or None (empty: one camera)."""
    if isinstance(names, str):
        return f'cameras must be a list of names, got the string {names!r}'
    if len(names) > MAX_CAMERAS:
        return f'cameras names {len(names)} cameras; at most {MAX_CAMERAS}'
    for name in names:
        reason = camera_name_error(name)
        if reason:
            return f'cameras: {reason}'
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return f'cameras: {name!r} is named twice; each camera needs topics of its own'
        seen.add(name)
    return None
