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


"""The ``espnet-ros`` command: offline tools around the registry and the engine."""

import argparse
import sys
from typing import Optional, Sequence

from espnet_ros.cli import bench, evaluate, export, registry_tools, segment
from espnet_ros.runtime.engine import EngineConfigError
from espnet_ros.zoo.checkpoints import CheckpointError
from espnet_ros.zoo.registry import UnknownModelError

SUBCOMMANDS = (segment, evaluate, registry_tools, bench, export)
# Errors a user can fix from the message alone: no traceback for these.
USER_ERRORS = (CheckpointError, UnknownModelError, EngineConfigError, OSError, ValueError)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog='espnet-ros', description='ESPNet-family semantic segmentation tools.')
    subparsers = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one subcommand; user errors print one line and exit with status 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except USER_ERRORS as error:
        print(f'espnet-ros {args.command}: error: {error}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
