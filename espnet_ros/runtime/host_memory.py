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
Keep freed host memory for reuse, so that per-frame tensors stop costing page faults.

glibc's malloc hands large blocks (a 512 x 256 x 20 float map is 10 MB) to the kernel when
they are freed and asks for fresh ones at the next frame, and the kernel zero-fills every
4 KiB page on first touch, thousands of page faults a frame. Raising malloc's mmap and trim
thresholds keeps the blocks in the heap, where the next frame finds them: no faults after
the first frame, and never more memory than the process's own peak. It is process-wide, and
a no-op where the C library is not glibc. Setting the thresholds also ends glibc's own
adjustment of them, which cannot be turned back on: ``espnet-ros bench`` runs its baseline
in a process of its own.

Threads other than the main one allocate from arenas made of heaps of at most 64 MB, and
glibc unmaps a heap as soon as it is empty whatever the trim threshold, so a 1024 x 512 map
(40 MB) still faulted in the node's inference thread. A top pad of a whole heap keeps
emptied heaps mapped. One arena for all threads (M_ARENA_MAX 1) would end those faults too,
but its lock is shared with the DDS and executor threads. The measurements behind each
choice are in docs/performance.md.
"""

import ctypes
import ctypes.util
from functools import lru_cache
from typing import Optional

# mallopt parameters from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap, and this much free heap is kept.
RETAINED_THRESHOLD = 1 << 30
# glibc's HEAP_MAX_SIZE on 64-bit systems: a thread arena's heaps are never larger.
THREAD_HEAP_SIZE = 64 << 20


@lru_cache(maxsize=1)
def _glibc() -> Optional[ctypes.CDLL]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    except OSError:
        return None
    return libc if hasattr(libc, 'gnu_get_libc_version') else None


def retain_freed_memory() -> bool:
    """Keep freed blocks for reuse (see the module docstring); return False if not glibc."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, RETAINED_THRESHOLD)
                and libc.mallopt(_M_TRIM_THRESHOLD, RETAINED_THRESHOLD)
                and libc.mallopt(_M_TOP_PAD, THREAD_HEAP_SIZE))
