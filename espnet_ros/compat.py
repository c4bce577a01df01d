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
The private APIs of our dependencies, in one place, each behind a version guard.

Every use of an underscore name of torch, rclpy or argparse goes through this module, so a
release that moves one breaks one function here, not the package.
"""

from typing import Callable

import torch
from torch._inductor import config as inductor_config


def with_frozen_weights(compiled: Callable[[torch.Tensor], torch.Tensor]
                        ) -> Callable[[torch.Tensor], torch.Tensor]:
    """
    Return ``compiled`` called with inductor's global ``freezing`` flag set.

    Dynamo reads that flag, not the compile options, when it traces (on the first call and
    on any recompilation) to decide whether the weights become constants of the graph.
    Without it nothing was frozen: no prepacked oneDNN weights and no constant folding.
    """
    def call(batch: torch.Tensor) -> torch.Tensor:
        with inductor_config.patch(freezing=True):
            return compiled(batch)
    return call
