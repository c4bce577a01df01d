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

"""The one reader of Linux's /proc for the tools: memory, threads and CPU time, the CPU model."""

import os
from pathlib import Path
import platform
from typing import Optional, Union

Pid = Union[int, str]  # a process id, or 'self'
KIB_PER_MB = 1024.0
# /proc/PID/stat: user and system time are fields 14 and 15; after the parenthesised name
# (which may hold spaces) they are the 12th and 13th.
_STAT_TIMES = slice(11, 13)
# The instruction sets that decide which kernels PyTorch and oneDNN run: AVX2 and AVX-512
# for fp32, AVX512-BF16 and AMX (tiles, bf16) for bf16 and mixed precision; ARM's names too.
ISA_FLAGS = ('avx2', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_tile', 'amx_bf16',
             'asimd', 'sve', 'bf16')
# Where /proc/cpuinfo names the processor: x86 'model name', some ARM kernels 'Hardware'.
_MODEL_FIELDS = ('model name', 'Hardware', 'Processor')


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


def cpu_model(cpuinfo: Path = Path('/proc/cpuinfo')) -> dict[str, object]:
    """
    Return the CPU's name and which of :data:`ISA_FLAGS` it has, as benchmarks report them.

    ``{'name': 'Intel(R) Xeon(R) Processor', 'isa': ['avx2', 'avx512f', ...]}``; without
    /proc the name is :func:`platform.processor` (or the machine type) and the list is empty.
    """
    try:
        text = cpuinfo.read_text()
    except OSError:
        return {'name': platform.processor() or platform.machine(), 'isa': []}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, _, value = line.partition(':')
        fields.setdefault(name.strip(), value.strip())  # the first processor's
    flags = set((fields.get('flags') or fields.get('Features') or '').split())
    model = next((fields[name] for name in _MODEL_FIELDS if fields.get(name)),
                 platform.processor() or platform.machine())
    return {'name': model, 'isa': [flag for flag in ISA_FLAGS if flag in flags]}


def describe_cpu(model: dict[str, object]) -> str:
    """Return ``cpu_model()`` as one line: 'Intel(R) Xeon(R) Processor (avx2 avx512f ...)'."""
    return f'{model["name"]} ({" ".join(model["isa"]) or "no listed ISA extensions"})'
