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


"""``espnet-ros train``: fine-tune an official network on your own labelled frames."""

import argparse
from pathlib import Path
import re

from espnet_ros.cli.common import parse_size, threads_argument
from espnet_ros.compat import SubParsers
from espnet_ros.runtime.options import DEFAULT_DEVICE, MAX_THREADS, usable_cores
from espnet_ros.runtime.process import use_threads
from espnet_ros.training.classes import DATASET_ALIASES, load_class_table
from espnet_ros.training.loop import Trainer, TrainingRun
from espnet_ros.training.recipe import AUTHORS_RECIPE
from espnet_ros.zoo.checkpoints import MODELS_ENV
from espnet_ros.zoo.registry import DEFAULT_MODEL

DURATION_UNITS_S = {'': 1, 's': 1, 'm': 60, 'h': 3600}
INTERRUPTED_STATUS = 130  # the shell's status for a command stopped by Ctrl-C


def parse_duration(text: str) -> float:
    """Parse '90s', '60m', '1.5h' or plain seconds into seconds, as an argparse type."""
    match = re.fullmatch(r'\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*', text.lower())
    if match is None or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f'expected a duration like 90s, 60m or 1.5h, got '
                                         f'{text!r}')
    return float(match[1]) * DURATION_UNITS_S[match[2]]


def register(subparsers: SubParsers) -> None:
    """Add the ``train`` subcommand."""
    parser = subparsers.add_parser(
        'train', help='fine-tune an official model on your own labelled frames',
        description='Fine-tune a registry model on folders of images and label PNGs (class '
                    'values, same file names) and write a model folder that the node and '
                    f'every command use by --name once it is in ${MODELS_ENV}.')
    parser.add_argument('--model', default=DEFAULT_MODEL,
                        help=f'base registry model (default {DEFAULT_MODEL})')
    parser.add_argument('--weights-dir', type=Path,
                        help="folder of the base's official checkpoint, if not found otherwise")
    parser.add_argument('--images', type=Path, required=True, help='training images folder')
    parser.add_argument('--labels', type=Path, required=True,
                        help='training label PNGs, one per image, same file name')
    parser.add_argument('--val-images', type=Path, help='validation images folder')
    parser.add_argument('--val-labels', type=Path, help='validation label PNGs')
    parser.add_argument('--classes', required=True, metavar='FILE|DATASET',
                        help='YAML or JSON class table (names, colours, void), or one of '
                             f'{", ".join(sorted(DATASET_ALIASES))}')
    parser.add_argument('--name', required=True, help='registry name of the new model')
    parser.add_argument('--out', type=Path, required=True, help='model folder to write')
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument('--epochs', type=int, help='number of epochs')
    length.add_argument('--time-budget', type=parse_duration, metavar='DURATION',
                        help='train until the next epoch would not fit, e.g. 60m')
    parser.add_argument('--input-size', type=parse_size, metavar='WxH',
                        help='training crop and network input (default: the frame size, '
                             "rounded down to the base's size multiple)")
    parser.add_argument('--batch', type=int, default=AUTHORS_RECIPE.batch,
                        help=f"frames per step (default {AUTHORS_RECIPE.batch}, the authors')")
    parser.add_argument('--device', default=DEFAULT_DEVICE, help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--resume', action='store_true',
                        help='continue the run in --out from its last finished epoch')
    parser.add_argument('--seed', type=int, default=0, help='seed of every random draw')
    parser.add_argument('--threads', type=threads_argument, default=usable_cores(),
                        metavar=f'0..{MAX_THREADS}',
                        help='CPU threads (default: every usable core, here '
                             f'{usable_cores()}: a fine-tune is a foreground job; 0 = half). '
                             'A rerun or --resume repeats a run exactly with the same --seed '
                             'and --threads')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check the inputs, train, and say how to use the result."""
    if (args.val_images is None) != (args.val_labels is None):
        raise ValueError('give both --val-images and --val-labels, or neither')
    if args.batch < 1:
        raise ValueError(f'--batch must be at least 1, got {args.batch}')
    use_threads(args.threads)
    training = TrainingRun(
        base=args.model, name=args.name, out=args.out, table=load_class_table(args.classes),
        train_images=args.images, train_labels=args.labels, val_images=args.val_images,
        val_labels=args.val_labels, epochs=args.epochs, time_budget_s=args.time_budget,
        input_size=args.input_size, batch=args.batch, device=args.device, resume=args.resume,
        seed=args.seed, weights_dir=args.weights_dir, show_progress=not args.no_progress)
    trainer = Trainer(training)
    try:
        outcome = trainer.fit()
    except KeyboardInterrupt:
        done = trainer.outcome.history[-1]['epoch'] if trainer.outcome.history else 0
        print(f'\ninterrupted; {done} epochs are saved in {training.work_dir}: add --resume '
              'to the same command to continue')
        return INTERRUPTED_STATUS
    print(f'best val mIoU {100 * outcome.best_miou:.2f} at epoch {outcome.best_epoch}: '
          f'{outcome.checkpoint} (sha256 {outcome.sha256})')
    print(f'curve: {training.work_dir}; use it with {MODELS_ENV}={args.out} and '
          f'--model {args.name} (node parameter model:={args.name})')
    return 0
