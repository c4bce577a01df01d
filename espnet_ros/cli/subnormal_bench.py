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

"""``espnet-ros bench-subnormals``: outputs with subnormal weights set to zero and as loaded."""

import argparse
import json
import os
from pathlib import Path
import sys
from typing import Any, Optional

from espnet_ros.cli.commands import help_of
from espnet_ros.cli.common import add_threads_argument, parse_size
from espnet_ros.compat import SubParsers
from espnet_ros.imaging.files import list_images
from espnet_ros.runtime.process import use_threads
from espnet_ros.tools.subnormal_outputs import compare_model, FrameSet
from espnet_ros.zoo import DATA_ENV

DEFAULT_MODELS = ('espnet_p2q8_camvid', 'espnet_p2q8_cityscapes')

EPILOG = f"""\
Both networks run eager fp32 with batch norms unfolded (the authors' way); the only
difference is the flush. Logits relative error: L2 norm of the difference over that of the
as-loaded logits, per frame. Agreement: pixels labelled alike at the frames' resolution.
Mean IoU ({'ignore-void'}) where the labelled set is of the model's own dataset. The
as-loaded network is slow on Intel CPUs (the reason for the flush): minutes per model.

example: espnet-ros bench-subnormals --threads 1 --json docs/subnormal_outputs.json
"""


def register(subparsers: SubParsers) -> None:
    """Add the ``bench-subnormals`` subcommand."""
    parser = subparsers.add_parser(
        'bench-subnormals', help=help_of('bench-subnormals'),
        description='Logits relative error, label agreement and mean IoU of each model with '
                    'its subnormal weights set to zero (as loaded by the package) against '
                    'the checkpoint exactly as it is, on a labelled set and on extra frames.',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', action='append',
                        help=f'registry name, repeatable (default: {", ".join(DEFAULT_MODELS)})')
    parser.add_argument('--weights-dir', type=Path, help='folder of the official checkpoints')
    parser.add_argument('--size', type=parse_size,
                        help="network input WxH (default: each model's training resolution)")
    parser.add_argument('--images', type=Path,
                        help=f'labelled frames (default: the CamVid val frames of ${DATA_ENV})')
    parser.add_argument('--labels', type=Path,
                        help='their label PNGs, same names (default: CamVid valannot)')
    parser.add_argument('--labels-dataset', default='camvid',
                        help='the dataset the labels are of: mean IoU for its models only')
    parser.add_argument('--frames', nargs='*', type=Path,
                        help='more frames for agreement only (default: the Cityscapes sample '
                             f'of ${DATA_ENV}; none if given empty)')
    add_threads_argument(parser)
    parser.add_argument('--json', type=Path, help='write the results here')
    parser.set_defaults(run=run)


def print_results(results: list[dict[str, Any]]) -> None:
    """Print one line per model and frame set."""
    for result in results:
        print(f'\n{result["model"]} at {result["size"]}: {result["subnormal_weights"]:,} '
              f'subnormal weights, {result["threads"]} threads, CPU {result["cpu"]}')
        for name, entry in result['sets'].items():
            miou = (f', mIoU {100 * entry["miou_flushed"]:.2f}% flushed / '
                    f'{100 * entry["miou_as_loaded"]:.2f}% as loaded'
                    if 'miou_flushed' in entry else '')
            print(f'  {name} ({entry["frames"]} frames): labels agree '
                  f'{100 * entry["label_agreement"]:.4f}% ({entry["differing_pixels"]} px '
                  f'differ), logits relative error mean {entry["logits_relative_error_mean"]:.2e} '
                  f'max {entry["logits_relative_error_max"]:.2e}{miou}')


def data_folder(*parts: str) -> Optional[Path]:
    """Return ``$ESPNET_ROS_DATA/<parts>``, or None where the variable is not set."""
    data = os.environ.get(DATA_ENV)
    return Path(data, *parts) if data else None


def run(args: argparse.Namespace) -> int:
    """Compare every model, print and write the results."""
    use_threads(args.threads)
    images = args.images or data_folder('camvid', 'val')
    label_folder = args.labels or data_folder('camvid', 'valannot')
    if images is None or label_folder is None:
        raise FileNotFoundError(f'no labelled frames: pass --images and --labels, or set '
                                f'${DATA_ENV} to a folder holding camvid/val and '
                                'camvid/valannot')
    args.images, args.labels = images, label_folder
    if args.frames is None:
        cityscapes = data_folder('cityscapes')
        args.frames = [cityscapes] if cityscapes is not None else []
    labelled = list_images([args.images])
    labels = {path.stem: path for path in list_images([args.labels])}
    missing = [path.name for path in labelled if path.stem not in labels]
    if missing:
        raise FileNotFoundError(f'{len(missing)} frames of {args.images} have no label PNG in '
                                f'{args.labels}, first: {missing[0]}')
    sets = [FrameSet(f'{args.labels_dataset}_{args.images.name}', labelled, labels,
                     args.labels_dataset)]
    if args.frames:
        sets.append(FrameSet('extra_frames', list_images(args.frames)))
    results = [compare_model(name, sets, weights_dir=args.weights_dir, size=args.size,
                             progress=lambda text: print(text, file=sys.stderr, end='\r'))
               for name in args.model or DEFAULT_MODELS]
    print_results(results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + '\n')
    return 0
