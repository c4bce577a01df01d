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
Busy cores on demand, so that a benchmark measures quiet and loaded in one run.

:class:`BackgroundLoad` starts N processes that each spin on one core (what SLAM, drivers
and planners do to a robot's computer), paused until :meth:`BackgroundLoad.busy` and
paused again by :meth:`BackgroundLoad.quiet` (SIGSTOP/SIGCONT), so that quiet and loaded
rounds can be interleaved without paying for process start-up. The processes are bounded:
each ends by itself after its time limit or when its parent is gone, and
:meth:`BackgroundLoad.close` (or leaving the ``with`` block) ends them at once.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import Optional

from espnet_ros.runtime.options import usable_cores

# Rounds of the busy loop between checks of the clock and the parent.
SPIN_ROUNDS = 200_000
DEFAULT_LIMIT_S = 1800.0
STOP_TIMEOUT_S = 5.0


def spin(limit_s: float, parent: int) -> None:
    """Keep one core busy until ``limit_s`` has passed or ``parent`` is no longer ours."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and os.getppid() == parent:
        for _ in range(SPIN_ROUNDS):
            pass


def load_error(cores: int) -> Optional[str]:
    """Return why ``cores`` busy processes are refused, or None."""
    if not 0 <= cores <= usable_cores():
        return (f'background load must be 0..{usable_cores()} busy cores (the cores this '
                f'process may use); got {cores}')
    return None


class BackgroundLoad:
    """``cores`` busy-looping processes, paused until :meth:`busy`."""

    def __init__(self, cores: int, *, limit_s: float = DEFAULT_LIMIT_S) -> None:
        """Start the processes, paused; raise ValueError for an unreasonable count."""
        reason = load_error(cores)
        if reason:
            raise ValueError(reason)
        self.cores = cores
        self.loaded = False
        command = [sys.executable, '-m', __name__, '--limit-s', str(limit_s),
                   '--parent', str(os.getpid())]
        self.processes = [subprocess.Popen(command) for _ in range(cores)]
        self.quiet()

    def _signal(self, number: int) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(number)

    def busy(self) -> None:
        """Let the processes spin."""
        self._signal(signal.SIGCONT)
        self.loaded = bool(self.processes)

    def quiet(self) -> None:
        """Pause the processes (they keep no core)."""
        self._signal(signal.SIGSTOP)
        self.loaded = False

    def running(self) -> int:
        """Return how many of the processes are alive."""
        return sum(process.poll() is None for process in self.processes)

    def close(self) -> None:
        """End the processes."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                process.send_signal(signal.SIGCONT)  # a stopped process ends when resumed
        for process in self.processes:
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.loaded = False

    def __enter__(self) -> 'BackgroundLoad':
        """Return the (paused) load."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """End the processes."""
        self.close()


def main(argv: Optional[list[str]] = None) -> int:
    """Spin on one core (the child side of :class:`BackgroundLoad`)."""
    parser = argparse.ArgumentParser(description='keep one core busy for a while')
    parser.add_argument('--limit-s', type=float, default=DEFAULT_LIMIT_S)
    parser.add_argument('--parent', type=int, default=os.getppid())
    args = parser.parse_args(argv)
    try:
        spin(args.limit_s, args.parent)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
