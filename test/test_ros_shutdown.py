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

"""Shutting ROS down at the end of a program survives rclpy's signal handler racing it."""

import pytest
import rclpy

from espnet_ros.compat import rcl_error, try_shutdown_ros


def test_a_shutdown_that_the_signal_handler_won_is_the_wanted_end(monkeypatch) -> None:
    """
    The race of the image player's exit under Ctrl-C, made deterministic.

    rclpy.try_shutdown saw the context up, then the signal handler shut it down first: rcl
    then refuses the second shutdown. Here the context really is shut down first, and the
    error is rcl's own.
    """
    rclpy.init()
    rclpy.shutdown()  # what the signal handler did in between

    def raced() -> None:
        raise rcl_error()('failed to shutdown: rcl_shutdown already called on the given '
                          'context')
    monkeypatch.setattr(rclpy, 'try_shutdown', raced)
    try_shutdown_ros()  # no error: ROS is down, as wanted


def test_any_other_shutdown_failure_is_raised(monkeypatch) -> None:
    rclpy.init()
    try:
        def failed() -> None:
            raise rcl_error()('failed to shutdown: something else')
        monkeypatch.setattr(rclpy, 'try_shutdown', failed)
        with pytest.raises(rcl_error()):
            try_shutdown_ros()
    finally:
        monkeypatch.undo()
        rclpy.try_shutdown()
