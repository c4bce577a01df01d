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
Argument types the command lines share.

``espnet-ros`` and the tools (``espnet-ros-live``, ``espnet-ros-soak``, the profiling
scripts) parse their counts with them. Standard library only, so that a tool can refuse a
bad count before it imports the engine or starts a node.
"""

import argparse
from typing import Callable


def int_at_least(minimum: int) -> Callable[[str], int]:
    """Return an argparse type that parses an integer of at least ``minimum``."""
    def parse(text: str) -> int:
        """Parse ``text``; refuse it with the reason if it is no such integer."""
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not an integer') from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f'must be at least {minimum}, got {value}')
        return value
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
