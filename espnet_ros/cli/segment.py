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
``espnet-ros segment``: label, colour and overlay PNGs for image files.

A file that cannot be read or whose outputs cannot be written is skipped and reported; the
rest of the batch goes on and the exit status says that something failed.
"""

import argparse
from collections import Counter
from pathlib import Path
import sys

import cv2
import numpy as np
from tqdm import tqdm

from espnet_ros.cli.commands import help_of
from espnet_ros.cli.common import (add_engine_arguments, add_label_map_argument,
                                   engine_from_args, OUTPUT_DIR)
from espnet_ros.compat import SubParsers
from espnet_ros.imaging.files import list_images, read_bgr
from espnet_ros.imaging.render import colorize, overlay

DEFAULT_ALPHA = 0.5
EXIT_SOME_FAILED = 1


def register(subparsers: SubParsers) -> None:
    """Add the ``segment`` subcommand."""
    parser = subparsers.add_parser(
        'segment', help=help_of('segment'),
        description='Write <name>_labels.png (class ids), <name>_color.png and '
                    '<name>_overlay.png for every image. Inputs sharing a name stem are told '
                    'apart by their extension, then by a number.')
    add_engine_arguments(parser)
    add_label_map_argument(parser)
    parser.add_argument('inputs', nargs='+', type=Path, metavar='IMAGE_OR_DIR')
    parser.add_argument('--out', type=Path, default=OUTPUT_DIR / 'segment',
                        help=f'output folder (default {OUTPUT_DIR / "segment"})')
    parser.add_argument('--alpha', type=float, default=DEFAULT_ALPHA,
                        help=f'overlay opacity of the colours (default {DEFAULT_ALPHA})')
    parser.set_defaults(run=run)


def output_names(images: list[Path]) -> list[str]:
    """
    Return the output name of each image: its stem, unless another input shares it.

    Clashing stems take the extension (``frame_png``), and inputs that still clash (same
    name in different folders) a number as well (``frame_png_2``), so no output is overwritten.
    """
    stems = Counter(path.stem for path in images)
    names = [path.stem if stems[path.stem] == 1 else f'{path.stem}_{path.suffix.lstrip(".")}'
             for path in images]
    clashes, seen = Counter(names), Counter()
    unique = []
    for name in names:
        seen[name] += 1
        unique.append(name if clashes[name] == 1 else f'{name}_{seen[name]}')
    return unique


def output_folder(out: Path) -> Path:
    """Create the output folder, or raise an OSError that says why it cannot be used."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f'cannot use {out} as the output folder: {error.strerror or error}'
                      ) from None
    return out


def write_png(path: Path, image: np.ndarray) -> None:
    """
    Write ``image`` to ``path`` as PNG, or raise an OSError naming the file.

    Encoded in memory and written by Python, which reports a full disk or an unwritable path;
    ``cv2.imwrite`` can report success for a file it could not finish.
    """
    encoded, payload = cv2.imencode('.png', image)
    if not encoded:
        raise OSError(f'cannot encode {path} as PNG')
    try:
        path.write_bytes(payload.tobytes())
    except OSError as error:
        raise OSError(f'cannot write {path}: {error.strerror or error}') from None


def run(args: argparse.Namespace) -> int:
    """Segment every input image and write the three PNGs per image."""
    images = list_images(args.inputs)
    out = output_folder(args.out)
    engine = engine_from_args(args)
    palette = engine.published_spec.dataset.palette
    failed: list[Path] = []
    for path, name in zip(tqdm(images, desc=f'segment ({engine.spec.name})', unit='img'),
                          output_names(images)):
        try:
            bgr = read_bgr(path)
            labels = engine.segment(bgr, order='bgr').labels
            color = colorize(labels, palette)
            blended = overlay(bgr, color, args.alpha, image_order='bgr')
            write_png(out / f'{name}_labels.png', labels)
            write_png(out / f'{name}_color.png', cv2.cvtColor(color, cv2.COLOR_RGB2BGR))
            write_png(out / f'{name}_overlay.png', cv2.cvtColor(blended, cv2.COLOR_RGB2BGR))
        except (OSError, ValueError) as error:
            failed.append(path)
            print(f'espnet-ros segment: skipped {path}: {error}', file=sys.stderr)
    written = len(images) - len(failed)
    print(f'wrote labels, colour and overlay PNGs for {written} of {len(images)} images to {out}')
    if failed:
        print(f'espnet-ros segment: error: {len(failed)} of {len(images)} images failed, '
              f'first: {failed[0]}', file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0
