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
import os
from pathlib import Path
import sys
from typing import Optional, Sequence

from espnet_ros.cli import bag, bench, evaluate, export, registry_tools, segment, train, video
from espnet_ros.cli.common import INTERRUPTED_STATUS
from espnet_ros.runtime.engine import EngineConfigError
from espnet_ros.training.loop import TrainingError
from espnet_ros.training.model_folder import WriteError
from espnet_ros.zoo.checkpoints import CheckpointError, MODELS_ENV
from espnet_ros.zoo.registry import ManifestError, UnknownModelError

SUBCOMMANDS = (segment, evaluate, registry_tools, bench, export, train, bag, video)
# Errors a user can fix from the message alone: no traceback for these.
USER_ERRORS = (CheckpointError, UnknownModelError, EngineConfigError, FileNotFoundError,
               ValueError, TrainingError, WriteError, ManifestError)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog='espnet-ros', description='ESPNet-family semantic segmentation tools.')
    parser.add_argument('--registry', type=Path, action='append', default=[], metavar='DIR',
                        help=f'model folder searched before ${MODELS_ENV} (repeatable): its '
                             'manifest.json adds your trained models by name')
    subparsers = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one subcommand; user errors print one line and exit with status 2."""
    args = build_parser().parse_args(argv)
    if args.registry:
        # Through the environment, so that the benchmark's worker processes see them too.
        os.environ[MODELS_ENV] = os.pathsep.join(
            [str(folder) for folder in args.registry]
            + [part for part in os.environ.get(MODELS_ENV, '').split(os.pathsep) if part])
    try:
        return args.run(args) or 0
    except USER_ERRORS as error:
        print(f'espnet-ros {args.command}: error: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'espnet-ros {args.command}: interrupted', file=sys.stderr)
        return INTERRUPTED_STATUS


if __name__ == '__main__':
    sys.exit(main())
