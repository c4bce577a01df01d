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


"""``espnet-ros models`` and ``espnet-ros fetch``: what the registry holds, and getting it."""

import argparse
import os
from pathlib import Path
from typing import Optional

from espnet_ros.compat import SubParsers
from espnet_ros.zoo import checkpoints
from espnet_ros.zoo.registry import get_spec, official, registry, sample_images, USER

SAMPLES_DIR = 'samples'


def register(subparsers: SubParsers) -> None:
    """Add the ``models`` and ``fetch`` subcommands."""
    models = subparsers.add_parser(
        'models', help='list the registry and checkpoint status',
        description=f'Official models, then the user models of the folders in '
                    f'${checkpoints.MODELS_ENV} that hold a manifest (source "user").')
    models.add_argument('--weights-dir', type=Path, help='also search this folder first')
    models.set_defaults(run=run_models)

    fetch = subparsers.add_parser(
        'fetch', help='fetch official checkpoints (and sample frames), verifying sha256',
        description="Download from the authors' repositories, or copy with --from DIR from a "
                    'local folder laid out like the official release. Existing verified files '
                    'are kept.')
    fetch.add_argument('--model', action='append', dest='models', metavar='NAME',
                       help='fetch only this model (repeatable; default: all)')
    fetch.add_argument('--from', dest='source', type=Path, metavar='DIR',
                       help='copy from this local folder instead of downloading')
    fetch.add_argument('--dest', type=Path,
                       help=f'target folder (default: ${checkpoints.MODELS_ENV}'
                            ", else the source tree's models/)")
    fetch.add_argument('--samples', action='store_true',
                       help='also fetch the sample camera frames used by the demo')
    fetch.add_argument('--samples-from', type=Path, metavar='DIR',
                       help='copy the sample frames from this folder instead of downloading')
    fetch.set_defaults(run=run_fetch)


def checkpoint_status(relative: str, sha256: str, weights_dir: Optional[Path]) -> str:
    """Return 'verified <dir>', 'MISMATCH <file>' or 'missing'."""
    found = checkpoints.find_checkpoint(relative, weights_dir)
    if found is None:
        return 'missing'
    if checkpoints.sha256_of(found) != sha256:
        return f'MISMATCH {found}'
    return f'verified {found.parents[len(Path(relative).parts) - 1]}'


def run_models(args: argparse.Namespace) -> int:
    """Print one line per registered model, official ones first, then the user's."""
    rows = [(spec.name, spec.source, spec.dataset.name, str(spec.num_classes),
             '{}x{}'.format(*spec.input_size),
             checkpoint_status(spec.checkpoint, spec.sha256,
                               spec.folder if spec.folder is not None else args.weights_dir))
            for spec in registry().values()]
    header = ('model', 'source', 'dataset', 'classes', 'input', 'checkpoint')
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header) - 1)]
    for row in [header] + rows:
        print('  '.join(cell.ljust(width) for cell, width in zip(row, widths)) + '  ' + row[-1])
    return 0


def default_destination() -> Path:
    """Return where ``fetch`` writes when no --dest is given."""
    return Path(os.environ.get(checkpoints.MODELS_ENV) or checkpoints.source_models_dir())


def run_fetch(args: argparse.Namespace) -> int:
    """Fetch the chosen checkpoints (and samples) and verify them."""
    specs = [get_spec(name) for name in args.models] if args.models else official().values()
    for spec in specs:
        if spec.source == USER:
            raise ValueError(f'{spec.name} is a user model of {spec.folder}: there is nothing '
                             'to fetch, its checkpoint is in that folder')
    destination = args.dest or default_destination()
    items = {(spec.checkpoint, spec.url, spec.sha256) for spec in specs}
    fetched = checkpoints.fetch(sorted(items), destination, source_dir=args.source)
    print(f'{len(fetched)} checkpoints verified in {destination}')
    if args.samples or args.samples_from:
        samples = [(sample['file'], sample['url'], sample['sha256'])
                   for sample in sample_images()]
        fetched = checkpoints.fetch(samples, destination / SAMPLES_DIR,
                                    source_dir=args.samples_from)
        print(f'{len(fetched)} sample frames verified in {destination / SAMPLES_DIR}')
    return 0
