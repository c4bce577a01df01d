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

"""``espnet-ros compile``: build the node's compiled graph into the cache ahead of time."""

import argparse
import sys

from espnet_ros.cli.commands import help_of
from espnet_ros.cli.common import add_model_arguments, add_threads_argument, parse_size
from espnet_ros.compat import SubParsers
from espnet_ros.runtime.options import DEFAULT_PRECISION, Precision

EPILOG = """\
The node (compile_mode background) builds its graph aside the first time it runs and loads it
in seconds afterwards; a node stopped before the build ends takes the build with it.
This command builds the same entry in the foreground, for a robot image or a first boot: give
the model, network input size, precision and threads the node will use. An entry already in
the cache is checked and kept.

example: espnet-ros compile --model espnet_p2q8_cityscapes --size 512x256
"""


def register(subparsers: SubParsers) -> None:
    """Add the ``compile`` subcommand."""
    parser = subparsers.add_parser(
        'compile', help=help_of('compile'),
        description="Build a model's compiled graph into the cache ($ESPNET_ROS_CACHE, else "
                    '$XDG_CACHE_HOME/espnet_ros), as the node would in the background.',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument('--size', type=parse_size,
                        help='network input WxH (default: the training size, as the node)')
    parser.add_argument('--precision', default=DEFAULT_PRECISION.value,
                        choices=(Precision.AUTO.value, Precision.FP32.value,
                                 Precision.MIXED.value),
                        help=f"arithmetic (default {DEFAULT_PRECISION}, as the node's)")
    add_threads_argument(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Build (or check) the entry; 0 once the graph is in the cache and agrees."""
    from espnet_ros.runtime.engine import SegmentationEngine
    from espnet_ros.runtime.graph_switch import SwitchState
    from espnet_ros.runtime.options import Backend, CompileMode
    from espnet_ros.runtime.process import use_threads

    use_threads(args.threads)
    engine = SegmentationEngine.from_pretrained(
        args.model, weights_dir=args.weights_dir, input_size=args.size, device='cpu',
        precision=args.precision, backend=Backend.AUTO, compile_mode=CompileMode.BACKGROUND,
        log=print, warn=lambda text: print(text, file=sys.stderr))
    switch = engine.start_background()
    if switch is None:
        raise ValueError(f'{args.model}: no compiled graph is kept for this model')
    try:
        state = switch.wait()
    finally:
        engine.close()
    if state != SwitchState.COMPILED:
        print(f'espnet-ros compile: {switch.describe()}', file=sys.stderr)
        return 1
    print(f'{switch.entry.package} ({engine.describe_runner()})')
    return 0
