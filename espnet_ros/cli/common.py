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


"""Arguments and helpers shared by the ``espnet-ros`` subcommands."""

import argparse
from pathlib import Path
from typing import Iterable, Optional

import cv2
import numpy as np

from espnet_ros.engine import SegmentationEngine

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.tif', '.tiff')
DEFAULT_MODEL = 'espnet_p2q8_cityscapes'


def parse_size(text: str) -> tuple[int, int]:
    """Parse 'WxH' into (width, height)."""
    try:
        width, height = (int(part) for part in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size {text!r} is not WIDTHxHEIGHT, e.g. 1024x512')
    return width, height


def add_engine_arguments(parser: argparse.ArgumentParser, *, size_help: Optional[str] = None
                         ) -> None:
    """Add --model, --weights-dir, --checkpoint, --size, --device, --precision."""
    parser.add_argument('--model', default=DEFAULT_MODEL,
                        help=f'registry name (default {DEFAULT_MODEL}; see `espnet-ros models`)')
    parser.add_argument('--weights-dir', type=Path,
                        help='folder laid out like the official release (espnet/encoder, ...)')
    parser.add_argument('--checkpoint', type=Path, help='explicit checkpoint file')
    parser.add_argument('--size', type=parse_size,
                        help=size_help or 'network input WxH (default: training resolution)')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--precision', default='fp32', help='auto, fp32, fp16, bf16 or mixed')


def engine_from_args(args: argparse.Namespace) -> SegmentationEngine:
    """Build the engine the common arguments describe."""
    return SegmentationEngine.from_pretrained(
        args.model, weights_dir=args.weights_dir, checkpoint=args.checkpoint,
        input_size=args.size, device=args.device, precision=args.precision)


def list_images(paths: Iterable[Path]) -> list[Path]:
    """Expand folders into their image files (sorted); keep files as given."""
    images: list[Path] = []
    for path in paths:
        if path.is_dir():
            images.extend(sorted(p for p in path.iterdir()
                                 if p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            images.append(path)
        else:
            raise FileNotFoundError(f'{path} is neither an image file nor a folder')
    if not images:
        raise FileNotFoundError('no images found in ' + ', '.join(str(p) for p in paths))
    return images


def read_bgr(path: Path) -> np.ndarray:
    """Read an image file as H x W x 3 uint8 BGR, or raise naming the file."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'{path} cannot be read as an image')
    return image
