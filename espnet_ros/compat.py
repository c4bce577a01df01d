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
The private APIs of our dependencies, in one place, each behind a guard.

Every use of an underscore name of torch, rclpy or argparse goes through this module, so a
release that moves or drops one changes one function here, not the package. torch is
imported inside the functions that need it, so the command line starts without it.
"""

import argparse
from typing import Any, Callable

# argparse has no public name for the object add_subparsers() returns.
SubParsers = getattr(argparse, '_SubParsersAction', Any)


def with_frozen_weights(compiled: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """
    Return ``compiled`` called with inductor's global ``freezing`` flag set.

    Dynamo reads that flag, not the compile options, when it traces (on the first call and
    on any recompilation) to decide whether the weights become constants of the graph.
    Without it nothing was frozen: no prepacked oneDNN weights and no constant folding.
    """
    from torch._inductor import config as inductor_config

    def call(batch: Any) -> Any:
        with inductor_config.patch(freezing=True):
            return compiled(batch)
    return call


def onednn_has_bf16() -> bool:
    """Return True if oneDNN has native bf16 kernels on this CPU; False where torch cannot say."""
    import torch

    probe = getattr(torch.ops.mkldnn, '_is_mkldnn_bf16_supported', None)
    return bool(torch.backends.mkldnn.is_available() and probe is not None and probe())


def finish_rcl_logging(context: Any) -> None:
    """
    Flush and close rcl's log file now, as rclpy does only at interpreter exit.

    A signal shuts the context down in C, which leaves the log to the interpreter's exit; the
    node's main skips that exit. rclpy has no public call for this; older releases (Humble)
    lack this one too, and then the interpreter's exit does the work.
    """
    finish = getattr(context, '_logging_fini', None)
    if finish is not None:
        finish()
