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
import importlib
import os
from pathlib import Path
import sys
from typing import Optional, Sequence

from espnet_ros.cli.commands import COMMANDS, INTERRUPTED_STATUS
from espnet_ros.zoo import MODELS_ENV


def global_options() -> argparse.ArgumentParser:
    """Return the parser of the options that come before the subcommand."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--registry', type=Path, action='append', default=[], metavar='DIR',
                        help=f'model folder searched before ${MODELS_ENV} (repeatable): its '
                             'manifest.json adds your trained models by name')
    return parser


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """
    Return the parser; only ``command``'s module is imported (none for None).

    The other subcommands are listed with their help alone, so that ``espnet-ros --help``
    and a mistyped command answer at once instead of after importing PyTorch.
    """
    parser = argparse.ArgumentParser(
        prog='espnet-ros', description='ESPNet-family semantic segmentation tools.',
        parents=[global_options()])
    subparsers = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    modules = {COMMANDS[command][0]} if command in COMMANDS else set()
    # In the table's order, which is the order --help lists them in.
    for name, (module, help_text) in COMMANDS.items():
        if name in subparsers.choices:
            continue  # registered with another command of its module
        if module in modules:
            importlib.import_module(f'espnet_ros.cli.{module}').register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def user_errors() -> tuple[type, ...]:
    """Return the errors a user can fix from the message alone: no traceback for these."""
    from espnet_ros.runtime.engine import EngineConfigError
    from espnet_ros.training.loop import TrainingError
    from espnet_ros.training.model_folder import WriteError
    from espnet_ros.zoo.checkpoints import CheckpointError
    from espnet_ros.zoo.registry import ManifestError, UnknownModelError
    # OSError: an unwritable or full output, a missing input; each names its file.
    return (CheckpointError, UnknownModelError, EngineConfigError, OSError, ValueError,
            TrainingError, WriteError, ManifestError)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one subcommand; user errors print one line and exit with status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _, rest = global_options().parse_known_args(argv)
    command = next((word for word in rest if not word.startswith('-')), None)
    args = build_parser(command).parse_args(argv)
    if args.registry:
        # Through the environment, so that the benchmark's worker processes see them too.
        os.environ[MODELS_ENV] = os.pathsep.join(
            [str(folder) for folder in args.registry]
            + [part for part in os.environ.get(MODELS_ENV, '').split(os.pathsep) if part])
    try:
        return args.run(args) or 0
    except user_errors() as error:
        print(f'espnet-ros {args.command}: error: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'espnet-ros {args.command}: interrupted', file=sys.stderr)
        return INTERRUPTED_STATUS


if __name__ == '__main__':
    sys.exit(main())
