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
The segmenter's process entry point: OpenMP told to wait passively before PyTorch loads.

OpenMP reads its wait policy once, when it is loaded, and importing the node loads it (with
PyTorch), so the policy is set here, before that import. See
:func:`espnet_ros.runtime.process.wait_passively`. A crash in native code (DDS, OpenCV,
PyTorch) prints every thread's Python stack to the node's output before the process ends.
"""

import faulthandler
from typing import NoReturn, Optional

from espnet_ros.runtime.process import wait_passively


def main(args: Optional[list[str]] = None) -> NoReturn:
    """Set the OpenMP wait policy, then run the segmenter node (its ``main`` never returns)."""
    # Otherwise a fatal signal ends the node without a word about where it came from.
    faulthandler.enable()
    wait_passively()
    from espnet_ros.ros.segmenter import main as run_node  # loads PyTorch and its OpenMP

    run_node(args)


if __name__ == '__main__':
    main()
