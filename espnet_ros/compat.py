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

Every use of an underscore name of torch (``torch._inductor``, ...), rclpy or argparse, and of
``rclpy.impl``, goes through this module, so a release that moves or drops one changes one
function here, not the package (test/test_architecture.py checks it). torch and rclpy are
imported inside the functions that need them: the command line starts without torch, and
the core, which imports this module, stays free of ROS (only the node calls the rclpy ones).
"""

import argparse
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping, Union

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


def aoti_load_package(path: Union[Path, str], model_name: str = 'model') -> Callable[..., Any]:
    """
    Return the model ``model_name`` of the AOTInductor package at ``path``, loaded.

    Read through an open file: the cache hands over ``/proc/self/fd/N`` (the very file whose
    sha256 was checked), a name torch warns about (and means to refuse) unless it ends in .pt2.
    """
    from torch._inductor.package import load_package

    with open(path, 'rb') as stream:
        return load_package(stream, model_name)


def aoti_compile_and_package(exported: Mapping[str, Any], target: Path,
                             options: dict[str, Any]) -> None:
    """
    Compile exported programs with AOTInductor into one package at ``target``, by name.

    What ``torch._inductor.aoti_compile_and_package`` does for one program, for several: each
    is compiled on its own, then all are packaged together (the documented way to keep
    several models in one ``.pt2``).
    """
    from torch._inductor import aot_compile
    from torch._inductor.package import package_aoti

    files = {}
    for name, program in exported.items():
        args, kwargs = program.example_inputs
        files[name] = aot_compile(program.module(check_guards=False), args, kwargs,
                                  options={**options, 'aot_inductor.package': True})
    package_aoti(str(target), files)


def inductor_config_patch(**settings: Any) -> ContextManager[Any]:
    """Return a context in which inductor's global configuration has ``settings``."""
    from torch._inductor import config as inductor_config

    return inductor_config.patch(**settings)


def onednn_has_bf16() -> bool:
    """Return True if oneDNN has native bf16 kernels on this CPU; False where torch cannot say."""
    import torch

    probe = getattr(torch.ops.mkldnn, '_is_mkldnn_bf16_supported', None)
    return bool(torch.backends.mkldnn.is_available() and probe is not None and probe())


def rcl_error() -> type:
    """Return the exception rclpy raises for an rcl failure (public only through rclpy.impl)."""
    from rclpy.impl.implementation_singleton import rclpy_implementation

    return rclpy_implementation.RCLError


def try_shutdown_ros() -> None:
    """
    Shut rclpy's default context down unless something else already has.

    ``rclpy.try_shutdown`` checks the context, then shuts it down; rclpy's own signal handler
    can shut it down in between (a Ctrl-C as the program ends), and the call then raises
    RCLError 'rcl_shutdown already called'. That case is the wanted end; any other failure,
    with the context still up, is raised.
    """
    import rclpy

    try:
        rclpy.try_shutdown()
    except rcl_error():
        if rclpy.ok():
            raise


def regroup_lifecycle_services(node: Any, group: Any,
                               wrap_change_state: Callable[[Callable], Callable]) -> None:
    """
    Move a lifecycle node's services to ``group``; wrap the ChangeState service's callback.

    rclpy's LifecycleNode creates its services in the node's default callback group and
    takes no group of its own; here they are taken out of it after the fact, through the
    services' attributes, which rclpy does not promise to keep.
    """
    for service in node.services:
        if service.srv_type.__module__.startswith('lifecycle_msgs'):
            service.callback_group = group
            group.add_entity(service)
            if service.srv_type.__name__ == 'ChangeState':
                service.callback = wrap_change_state(service.callback)


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
