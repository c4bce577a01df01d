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
The frame hand-off between the camera callback and the inference thread.

The camera callback never waits for the network: it drops the frame into a one-place
mailbox, replacing (and counting) any frame the worker has not taken yet, so latency stays
bounded when the camera is faster than the network.
"""

import threading
from typing import Generic, Optional, TypeVar

Item = TypeVar('Item')


class NewestWins(Generic[Item]):
    """A one-place mailbox: ``put`` replaces an untaken item, ``take`` waits for one."""

    def __init__(self) -> None:
        self._item: Optional[Item] = None
        self._ready = threading.Condition()
        self._closed = False
        self.replaced = 0

    def put(self, item: Item) -> bool:
        """Offer an item; return True if it replaced one the worker never took."""
        with self._ready:
            replaced = self._item is not None
            self.replaced += replaced
            self._item = item
            self._ready.notify()
            return replaced

    def take(self, timeout: Optional[float] = None) -> Optional[Item]:
        """Return the newest item, waiting up to ``timeout`` s; None if none came or closed."""
        with self._ready:
            if self._item is None and not self._closed:
                self._ready.wait(timeout)
            item, self._item = self._item, None
            return item

    def reopen(self) -> None:
        """Make ``take`` wait again after :meth:`close` (a worker started anew)."""
        with self._ready:
            self._closed = False

    def close(self) -> None:
        """Wake any waiting ``take`` for good; later puts are still accepted but never waited."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
