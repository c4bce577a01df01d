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
Native code built in the process: the compiler to use, and a build done once per process.

The fused head's C kernel (:mod:`espnet_ros.runtime.phase_labels`) and the oneDNN plan
(:mod:`espnet_ros.runtime.onednn_plan`) are compiled at run time for the machine's own
vector instructions, each in a private temporary folder removed once loaded.
"""

import os
import shutil
import threading
from typing import Callable, Generic, Optional, Sequence, TypeVar

Built = TypeVar('Built')


def find_compiler(variable: str, candidates: Sequence[str]
                  ) -> tuple[Optional[str], Optional[str]]:
    """
    Return the compiler that ``$variable`` names, else the first of ``candidates`` on PATH.

    Returns (path, None), or (None, why there is none).
    """
    named = os.environ.get(variable)
    if named:
        found = shutil.which(named)
        return (found, None) if found else (None, f'${variable} names {named}, which is not '
                                                  f'found')
    found = next(filter(None, map(shutil.which, candidates)), None)
    if found is None:
        return None, (f'no compiler found (${variable} is not set, and none of '
                      f'{", ".join(candidates)} is on PATH)')
    return found, None


class BuiltOnce(Generic[Built]):
    """What ``build`` returns, built on first use in this process; or why there is none."""

    def __init__(self, build: Callable[[], tuple[Optional[Built], Optional[str]]]) -> None:
        """Keep ``build``: it returns (the thing, None) or (None, the reason)."""
        self._build = build
        self._lock = threading.Lock()
        self._built = False
        self.value: Optional[Built] = None
        self.reason: Optional[str] = None

    def get(self) -> Optional[Built]:
        """Return the thing, building it the first time; None if it cannot be."""
        with self._lock:
            if not self._built:
                self.value, self.reason = self._build()
                self._built = True
            return self.value
