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


"""``espnet-ros segment``: label, colour and overlay PNGs for image files."""

import argparse
from pathlib import Path

import cv2
from tqdm import tqdm

from espnet_ros.cli.common import add_engine_arguments, engine_from_args
from espnet_ros.compat import SubParsers
from espnet_ros.imaging.files import list_images, read_bgr
from espnet_ros.imaging.render import colorize, overlay

DEFAULT_ALPHA = 0.5


def register(subparsers: SubParsers) -> None:
    """Add the ``segment`` subcommand."""
    parser = subparsers.add_parser(
        'segment', help='segment image files or folders',
        description='Write <name>_labels.png (class ids), <name>_color.png and '
                    '<name>_overlay.png for every image.')
    add_engine_arguments(parser)
    parser.add_argument('inputs', nargs='+', type=Path, metavar='IMAGE_OR_DIR')
    parser.add_argument('--out', type=Path, required=True, help='output folder')
    parser.add_argument('--alpha', type=float, default=DEFAULT_ALPHA,
                        help=f'overlay opacity of the colours (default {DEFAULT_ALPHA})')
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Segment every input image and write the three PNGs per image."""
    images = list_images(args.inputs)
    engine = engine_from_args(args)
    palette = engine.spec.dataset.palette
    args.out.mkdir(parents=True, exist_ok=True)
    for path in tqdm(images, desc=f'segment ({engine.spec.name})', unit='img'):
        bgr = read_bgr(path)
        labels = engine.segment(bgr, order='bgr').labels
        color = colorize(labels, palette)
        blended = overlay(bgr, color, args.alpha, image_order='bgr')
        cv2.imwrite(str(args.out / f'{path.stem}_labels.png'), labels)
        cv2.imwrite(str(args.out / f'{path.stem}_color.png'),
                    cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(args.out / f'{path.stem}_overlay.png'),
                    cv2.cvtColor(blended, cv2.COLOR_RGB2BGR))
    print(f'wrote labels, colour and overlay PNGs for {len(images)} images to {args.out}')
    return 0
