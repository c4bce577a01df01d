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
Compare the fine-tuning recipe with the changes left out one at a time, in short runs.

Each variant fine-tunes the same base on the same CamVid frames for the same epochs at a
reduced input size (so that all of them fit in minutes), with the same seed; the table
gives the validation mIoU (void ignored) after each epoch. It measures which of the
recipe's changes help early in a fine-tune, the part a time budget spends most of.

usage: python scripts/recipe_ablation.py [--epochs 4] [--size 240x176] [--json F]
"""

import argparse
from dataclasses import replace
import json
from pathlib import Path
import sys
import tempfile
import time

from espnet_ros.runtime.options import parse_size
from espnet_ros.runtime.process import use_threads
from espnet_ros.training.classes import load_class_table
from espnet_ros.training.data import Augmentation
from espnet_ros.training.loop import Trainer, TrainingRun
from espnet_ros.training.recipe import AUTHORS_RECIPE

SHARED = Path(__file__).resolve().parents[2] / 'shared'
CAMVID = SHARED / 'data' / 'camvid'
BASE = 'espnet_p2q8_cityscapes'
VARIANTS = {
    'recipe (new layers 10x the learning rate, scales 0.5-1.5)': AUTHORS_RECIPE,
    "one learning rate for all layers (the authors')": replace(
        AUTHORS_RECIPE, new_layer_lr_factor=1.0),
    'no scale augmentation (flips and crops only)': replace(
        AUTHORS_RECIPE, augmentation=Augmentation(scale_range=(1.0, 1.0))),
}


def main() -> int:
    """Run every variant; print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--epochs', type=int, default=4)
    parser.add_argument('--size', type=parse_size, default=(240, 176))
    parser.add_argument('--json', type=Path)
    args = parser.parse_args()
    use_threads(0)
    rows = []
    for label, recipe in VARIANTS.items():
        with tempfile.TemporaryDirectory() as out:
            run = TrainingRun(base=BASE, name='ablation', out=Path(out),
                              table=load_class_table('camvid'),
                              train_images=CAMVID / 'train', train_labels=CAMVID / 'trainannot',
                              val_images=CAMVID / 'val', val_labels=CAMVID / 'valannot',
                              epochs=args.epochs, input_size=args.size, seed=0,
                              weights_dir=SHARED / 'weights', recipe=recipe,
                              show_progress=False)
            started = time.monotonic()
            outcome = Trainer(run, log=lambda text: print(f'  {text}', flush=True)).fit()
            rows.append({'variant': label, 'seconds': round(time.monotonic() - started),
                         'val_miou': [round(100 * r['val_miou'], 2) for r in outcome.history]})
            print(f'{label}: {rows[-1]["val_miou"]}', flush=True)
    for row in rows:
        print(f'{row["variant"]:60s} ' + ' '.join(f'{m:6.2f}' for m in row['val_miou']))
    if args.json:
        args.json.write_text(json.dumps({'base': BASE, 'size': list(args.size),
                                         'epochs': args.epochs, 'rows': rows}, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
