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

"""How the package's nodes end on a signal: once, cleanly, whatever arrives during clean-up."""

import signal
from types import FrameType
from typing import Optional

# What ros2 launch and a terminal send to stop a node.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def ignore_further_signals() -> None:
    """
    Ignore SIGINT and SIGTERM from now on: a node's clean-up has begun.

    A second Ctrl-C must not abort it, and Python runs a handler for a signal rclpy already
    acted on at its next instruction: a KeyboardInterrupt out of the clean-up itself.
    """
    for number in SIGNALS:
        signal.signal(number, signal.SIG_IGN)


def ignore_signal(number: int, frame: Optional[FrameType]) -> None:
    """Do nothing: a Python handler for a signal that rclpy's own handler acts on."""
