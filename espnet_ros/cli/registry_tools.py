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

from espnet_ros.cli.commands import help_of
from espnet_ros.cli.table import aligned_lines
from espnet_ros.compat import SubParsers
from espnet_ros.zoo import checkpoints
from espnet_ros.zoo.label_map import load_for_dataset
from espnet_ros.zoo.registry import (checkpoint_subnormals, class_table, get_spec, ModelSpec,
                                     official, registry, sample_images, USER)

SAMPLES_DIR = 'samples'


def register(subparsers: SubParsers) -> None:
    """Add the ``models`` and ``fetch`` subcommands."""
    models = subparsers.add_parser(
        'models', help=help_of('models'),
        description='Without NAME: every registry model (official ones, then the user models '
                    f'of the folders in ${checkpoints.MODELS_ENV} that hold a manifest), its '
                    'training size and where its checkpoint was found. With NAME: that model '
                    'and its class table (id, name, palette colour), as the node latches it on '
                    'segmentation/classes.')
    models.add_argument('name', nargs='?', metavar='NAME', help="show this model's classes")
    models.add_argument('--weights-dir', type=Path,
                        help='also search this folder first (laid out like the official '
                             'release: espnet/encoder, espnet/decoder, espnetv2)')
    models.add_argument('--label-map', type=Path, metavar='FILE',
                        help="with NAME: check a label map (the node's label_map) against the "
                             "model's classes and print the classes it publishes")
    models.set_defaults(run=run_models)

    fetch = subparsers.add_parser(
        'fetch', help=help_of('fetch'),
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


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """Print rows in left-aligned columns."""
    print('\n'.join(aligned_lines(header, rows, left=len(header))))


def print_subnormals(spec: ModelSpec, weights_dir: Optional[Path]) -> None:
    """Say how many of the checkpoint's weights are subnormal, set to zero when it is loaded."""
    try:
        count, total = checkpoint_subnormals(
            spec, weights_dir=spec.folder if spec.folder is not None else weights_dir)
    except checkpoints.CheckpointError:
        return  # the table's checkpoint column already says missing or MISMATCH
    print(f'subnormal weights set to zero at load: {count:,} of {total:,} float weights '
          '(each one costs a micro-code assist on Intel CPUs; zero changes the outputs below '
          'float rounding)')


def print_label_map(spec: ModelSpec, path: Path) -> None:
    """Print the classes a label map publishes for ``spec``: id, name, colour, members."""
    label_map = load_for_dataset(path, spec.dataset)
    colours = {str(index): ' '.join(str(c) for c in group.color)
               for index, group in enumerate(label_map.groups)}
    print()
    print(f'published with {path} (unlisted: {label_map.unlisted}):')
    print_table(('id', 'class', 'colour (RGB)', 'model classes'), [
        (index, name, colours.get(index, '0 0 0'), members)
        for index, name, members in label_map.table()])


def run_models(args: argparse.Namespace) -> int:
    """Print one line per registered model, or one model's class table (and label map)."""
    if args.label_map is not None and not args.name:
        raise ValueError('--label-map needs the model NAME its classes are grouped from')
    specs = [get_spec(args.name)] if args.name else list(registry().values())
    if args.label_map is not None:
        load_for_dataset(args.label_map, specs[0].dataset)  # refused before anything prints
    print_table(('model', 'source', 'dataset', 'classes', 'input', 'checkpoint'), [
        (spec.name, spec.source, spec.dataset.name, str(spec.num_classes),
         '{}x{}'.format(*spec.input_size),
         checkpoint_status(spec.checkpoint, spec.sha256,
                           spec.folder if spec.folder is not None else args.weights_dir))
        for spec in specs])
    if args.name:
        print_subnormals(specs[0], args.weights_dir)
        table = class_table(specs[0])
        print()
        print_table(('id', 'class', 'colour (RGB)'), [
            (str(entry['id']), entry['name'] + (' (void)' if entry['id'] == table['void_class']
                                                else ''),
             ' '.join(str(channel) for channel in entry['color']))
            for entry in table['classes']])
        if args.label_map is not None:
            print_label_map(specs[0], args.label_map)
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
