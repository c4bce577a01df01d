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

"""The one reader of Linux's /proc for the tools: memory, threads and CPU time of a process."""

import os
from pathlib import Path
from typing import Optional, Union

Pid = Union[int, str]  # a process id, or 'self'
KIB_PER_MB = 1024.0
# /proc/PID/stat: user and system time are fields 14 and 15; after the parenthesised name
# (which may hold spaces) they are the 12th and 13th.
_STAT_TIMES = slice(11, 13)


def status_fields(pid: Pid = 'self') -> dict[str, list[str]]:
    """Return /proc/PID/status as {field: its words}; empty where /proc cannot be read."""
    try:
        text = Path(f'/proc/{pid}/status').read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(':')
        fields[name] = value.split()
    return fields


def status_kib(field: str, pid: Pid = 'self') -> Optional[int]:
    """Return a kB field of /proc/PID/status (VmRSS, VmHWM, ...), or None if unavailable."""
    words = status_fields(pid).get(field)
    return int(words[0]) if words else None


def cpu_seconds(pid: Pid = 'self') -> float:
    """Return the user plus system CPU time of a process, in seconds."""
    stat = Path(f'/proc/{pid}/stat').read_text()
    ticks = stat.rpartition(')')[2].split()[_STAT_TIMES]
    return sum(int(tick) for tick in ticks) / os.sysconf('SC_CLK_TCK')
