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


"""``espnet-ros eval``: per-class IoU and mean IoU against ground-truth label images."""

import argparse
from collections import Counter
import json
import math
from pathlib import Path
import sys
from typing import Any, Optional

import cv2
import numpy as np
from tqdm import tqdm

from espnet_ros.cli.commands import help_of
from espnet_ros.cli.common import add_engine_arguments, engine_from_args, OUTPUT_DIR
from espnet_ros.compat import SubParsers
from espnet_ros.imaging.files import list_images, read_bgr
from espnet_ros.imaging.metrics import ConfusionMatrix, mean_iou, protocol_ignore, PROTOCOLS
from espnet_ros.runtime.engine import SegmentationEngine


def register(subparsers: SubParsers) -> None:
    """Add the ``eval`` subcommand."""
    parser = subparsers.add_parser(
        'eval', help=help_of('eval'),
        description='Score a model on images whose label PNGs (class ids) share their names.')
    add_engine_arguments(parser)
    parser.add_argument('--images', type=Path, required=True, help='folder of images')
    parser.add_argument('--labels', type=Path, required=True, help='folder of label PNGs')
    parser.add_argument('--ignore', type=int,
                        help="void label (default: the dataset's void class)")
    parser.add_argument('--protocol', choices=PROTOCOLS, default='ignore-void',
                        help='how void pixels count (see espnet_ros.imaging.metrics)')
    parser.add_argument('--json', type=Path, help='write the scores here')
    parser.add_argument('--plot', type=Path,
                        help=f'confusion-matrix PNG (default: beside --json, else '
                             f'{OUTPUT_DIR}/<model>_confusion.png)')
    parser.set_defaults(run=run)


def pair_labels(images: list[Path], labels_dir: Path) -> list[tuple[Path, Path]]:
    """Match each image to the label file of the same stem, or raise naming the first miss."""
    by_stem = {path.stem: path for path in list_images([labels_dir])}
    missing = [image.name for image in images if image.stem not in by_stem]
    if missing:
        raise FileNotFoundError(f'{len(missing)} images have no label file in {labels_dir}, '
                                f'first: {missing[0]}')
    return [(image, by_stem[image.stem]) for image in images]


def score(engine: SegmentationEngine, pairs: list[tuple[Path, Path]], *, protocol: str,
          void_class: Optional[int]) -> tuple[ConfusionMatrix, Counter]:
    """
    Run the engine over every (image, label) pair and accumulate the confusion matrix.

    Also return the ground-truth values outside the class table (and not the ignored label)
    with their pixel counts: they are not scored, and the caller says so.
    """
    matrix = ConfusionMatrix(engine.spec.num_classes)
    ignore = protocol_ignore(protocol, void_class)
    unscored: Counter = Counter()
    for image_path, label_path in tqdm(pairs, desc=f'eval ({engine.spec.name})', unit='img'):
        truth = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if truth is None or truth.ndim != 2:
            raise ValueError(f'{label_path} is not a single-channel label image')
        prediction = engine.segment(read_bgr(image_path), order='bgr').labels
        if truth.shape != prediction.shape:
            raise ValueError(f'{label_path} is {truth.shape[1]}x{truth.shape[0]} but its image '
                             f'{image_path} is {prediction.shape[1]}x{prediction.shape[0]}')
        values, counts = np.unique(truth, return_counts=True)
        outside = (values >= matrix.num_classes) & (values != ignore)
        unscored.update(dict(zip(values[outside].tolist(), counts[outside].tolist())))
        matrix.update(prediction, truth, ignore=ignore)
    return matrix, unscored


def warn_unscored(unscored: Counter, num_classes: int) -> None:
    """Say which ground-truth values were outside the class table, with pixel counts."""
    if unscored:
        listed = ', '.join(f'{value}: {count:,} px' for value, count in sorted(unscored.items()))
        print(f'espnet-ros eval: warning: ground-truth labels outside the {num_classes} classes '
              f'of the model were not scored ({listed}); wrong dataset or --ignore?',
              file=sys.stderr)


def json_number(value: float) -> Optional[float]:
    """Return ``value``, or None (JSON null) when it is NaN: JSON has no NaN."""
    return None if math.isnan(value) else float(value)


def report(engine: SegmentationEngine, matrix: ConfusionMatrix, *, protocol: str,
           void_class: Optional[int], images: int) -> dict[str, Any]:
    """Return the scores as the JSON document ``eval`` writes."""
    classes = engine.spec.dataset.classes
    iou = matrix.iou()
    return {
        'model': engine.spec.name,
        'protocol': protocol,
        'void_class': void_class,
        'images': images,
        'input_size': list(engine.input_size),
        'precision': engine.precision,
        'backend': engine.backend,
        'miou': json_number(mean_iou(matrix, void_class)),
        'pixel_accuracy': json_number(matrix.pixel_accuracy()),
        'per_class_iou': {name: json_number(value)
                          for c, (name, value) in enumerate(zip(classes, iou))
                          if c != void_class},
    }


def print_table(scores: dict[str, Any]) -> None:
    """Print per-class IoU and the mean as an aligned table."""
    width = max(len(name) for name in scores['per_class_iou'])
    print(f'{"class":<{width}}  IoU (%)')
    for name, value in scores['per_class_iou'].items():
        shown = '   n/a' if value is None else f'{100 * value:6.2f}'
        print(f'{name:<{width}}  {shown}')
    mean = '   n/a' if scores['miou'] is None else f'{100 * scores["miou"]:6.2f}'
    print(f'{"mean":<{width}}  {mean}   '
          f'({scores["model"]}, {scores["images"]} images, protocol {scores["protocol"]})')


def plot_confusion(matrix: ConfusionMatrix, classes: tuple[str, ...], path: Path) -> None:
    """Save the row-normalised confusion matrix as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = matrix.counts.sum(1, keepdims=True)
    normalised = np.divide(matrix.counts, rows, out=np.zeros(matrix.counts.shape), where=rows > 0)
    figure, axes = plt.subplots(figsize=(8, 7))
    shown = axes.imshow(normalised, cmap='viridis', vmin=0, vmax=1)
    axes.set_xticks(range(len(classes)), classes, rotation=90)
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel('predicted')
    axes.set_ylabel('ground truth')
    figure.colorbar(shown, ax=axes, label='fraction of the true class')
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def run(args: argparse.Namespace) -> int:
    """Score the model, print the table, write JSON and the plot."""
    pairs = pair_labels(list_images([args.images]), args.labels)
    engine = engine_from_args(args)
    void_class = args.ignore if args.ignore is not None else engine.spec.dataset.void_class
    matrix, unscored = score(engine, pairs, protocol=args.protocol, void_class=void_class)
    warn_unscored(unscored, engine.spec.num_classes)
    scores = report(engine, matrix, protocol=args.protocol, void_class=void_class,
                    images=len(pairs))
    scores['unscored_label_pixels'] = {str(value): count
                                       for value, count in sorted(unscored.items())}
    print_table(scores)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(scores, indent=2, allow_nan=False) + '\n')
    plot = args.plot or (args.json.with_name(args.json.stem + '_confusion.png') if args.json
                         else OUTPUT_DIR / f'{engine.spec.name}_confusion.png')
    plot.parent.mkdir(parents=True, exist_ok=True)
    plot_confusion(matrix, engine.spec.dataset.classes, plot)
    print(f'confusion matrix plot: {plot}')
    return 0
