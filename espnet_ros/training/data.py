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
Folders of labelled frames: pairing, checking every file up front, and augmenting.

Every image must have a label PNG of the same stem (and the reverse), all images one size,
every label the size of its image with values in the class table. The checks read every
label once before training starts, so that a bad file fails in seconds naming the file,
not an hour into a run. The same pass counts the class histogram the loss weights use.
"""

from dataclasses import dataclass
import math
from pathlib import Path
from typing import Optional
import warnings

import cv2
import numpy as np
from PIL import Image
import torch

from espnet_ros.imaging.files import IMAGE_SUFFIXES, read_bgr
from espnet_ros.training.classes import ClassTable
from espnet_ros.zoo.registry import Normalization

IGNORE_INDEX = -1  # target of pixels left out of the loss: void and crop padding

# A training frame's largest area: 8K x 4K; a larger one is likely a decompression bomb.
MAX_TRAINING_PIXELS = 8192 * 4096


class DataError(ValueError):
    """A folder of frames or labels that cannot be trained on; the message names the file."""


@dataclass(frozen=True)
class LabelledFolder:
    """Checked image/label pairs of one split, their common size and class histogram."""

    images_dir: Path
    pairs: tuple[tuple[Path, Path], ...]
    size: tuple[int, int]  # (width, height) of every frame
    histogram: np.ndarray  # pixels per class, void left out


def _files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise DataError(f'{folder}: the {what} folder does not exist')
    files = {path.stem: path for path in sorted(folder.iterdir())
             if path.suffix.lower() in IMAGE_SUFFIXES}
    if not files:
        raise DataError(f'{folder}: the {what} folder holds no images '
                        f'({", ".join(IMAGE_SUFFIXES)})')
    return files


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with warnings.catch_warnings():
            # Checked below against a bound of our own, with the file named.
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            with Image.open(path) as image:
                size = image.size
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f'{path}: cannot be read as an image ({error})') from None
    if size[0] * size[1] > MAX_TRAINING_PIXELS:
        raise DataError(f'{path}: {size[0]}x{size[1]} is larger than the {MAX_TRAINING_PIXELS} '
                        'pixels a training frame may have; scale the frames down first')
    return size


def _read_label(path: Path, size: tuple[int, int], table: ClassTable) -> np.ndarray:
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise DataError(f'{path}: cannot be read as a label image')
    if label.ndim != 2 or label.dtype != np.uint8:
        raise DataError(f'{path}: a label must be a single-channel 8-bit PNG of class values, '
                        f'got shape {label.shape} {label.dtype}')
    if (label.shape[1], label.shape[0]) != size:
        raise DataError(f'{path}: label is {label.shape[1]}x{label.shape[0]}, its image is '
                        f'{size[0]}x{size[1]}')
    counts = np.bincount(label.reshape(-1), minlength=256)
    foreign = sorted(set(np.flatnonzero(counts).tolist()) - table.allowed_values())
    if foreign:
        raise DataError(f'{path}: label values {foreign} are not in the class table '
                        f'(0..{table.num_classes - 1}, void {table.void})')
    return counts[:table.num_classes]


def scan_folder(images_dir: Path, labels_dir: Path, table: ClassTable) -> LabelledFolder:
    """Pair and check every frame of a split; raise :class:`DataError` at the first bad file."""
    images = _files(images_dir, 'images')
    labels = _files(labels_dir, 'labels')
    unlabelled = sorted(set(images) - set(labels))
    if unlabelled:
        raise DataError(f'{images[unlabelled[0]]}: no label of the same name in {labels_dir} '
                        f'({len(unlabelled)} images without labels)')
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise DataError(f'{labels[orphans[0]]}: no image of the same name in {images_dir} '
                        f'({len(orphans)} labels without images)')
    pairs = tuple((images[stem], labels[stem]) for stem in sorted(images))
    size = _image_size(pairs[0][0])
    histogram = np.zeros(table.num_classes, np.int64)
    for image, label in pairs:
        own = _image_size(image)
        if own != size:
            raise DataError(f'{image}: is {own[0]}x{own[1]}, the other frames are '
                            f'{size[0]}x{size[1]} (frames of one folder must share a size)')
        histogram += _read_label(label, size, table)
    if table.void is not None and table.void < table.num_classes:
        histogram[table.void] = 0
    return LabelledFolder(images_dir, pairs, size, histogram)


def read_pair(image_path: Path, label_path: Path, table: ClassTable, channel_order: str
              ) -> tuple[np.ndarray, np.ndarray]:
    """Return the frame (H x W x 3 uint8 in ``channel_order``) and its int64 targets."""
    image = read_bgr(image_path)
    if channel_order == 'rgb':
        image = np.ascontiguousarray(image[..., ::-1])
    label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED).astype(np.int64)
    if table.void is not None:
        label[label == table.void] = IGNORE_INDEX
    return image, label


@dataclass(frozen=True)
class Augmentation:
    """The authors' augmentation: random scale, random crop at the input size, random flip."""

    scale_range: tuple[float, float]
    flip: bool = True


class TrainingFrames(torch.utils.data.Dataset):
    """Augmented crops of one split at the network input size, as uint8 frames and targets."""

    def __init__(self, folder: LabelledFolder, table: ClassTable, normalization: Normalization,
                 input_size: tuple[int, int], augmentation: Augmentation) -> None:
        """Serve ``folder``'s pairs; random draws come from :meth:`reseed`'s generator."""
        self.folder = folder
        self.table = table
        self.channel_order = normalization.channel_order
        # Padding takes the normalisation mean, which the network sees as zero.
        self.fill = tuple(float(m) for m in normalization.mean)
        self.input_size = input_size
        self.augmentation = augmentation
        self.generator = torch.Generator()

    def reseed(self, seed: int) -> None:
        """Restart the random draws: one seed per epoch makes a resumed run replay exactly."""
        self.generator.manual_seed(seed)

    def __len__(self) -> int:
        """Return the number of frames."""
        return len(self.folder.pairs)

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=self.generator))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return one augmented crop: H x W x 3 uint8 and H x W int64 targets."""
        image, label = read_pair(*self.folder.pairs[index], self.table, self.channel_order)
        width, height = self.input_size
        scale = self._uniform(*self.augmentation.scale_range)
        scaled = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, scaled, interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(label.astype(np.int32), scaled, interpolation=cv2.INTER_NEAREST)
        pad_x, pad_y = max(0, width - scaled[0]), max(0, height - scaled[1])
        if pad_x or pad_y:
            image = cv2.copyMakeBorder(image, 0, pad_y, 0, pad_x, cv2.BORDER_CONSTANT,
                                       value=self.fill)
            label = cv2.copyMakeBorder(label, 0, pad_y, 0, pad_x, cv2.BORDER_CONSTANT,
                                       value=IGNORE_INDEX)
        left = math.floor(self._uniform(0, label.shape[1] - width + 1))
        top = math.floor(self._uniform(0, label.shape[0] - height + 1))
        image = image[top:top + height, left:left + width]
        label = label[top:top + height, left:left + width]
        if self.augmentation.flip and self._uniform(0, 1) < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        return (torch.from_numpy(np.ascontiguousarray(image)),
                torch.from_numpy(np.ascontiguousarray(label).astype(np.int64)))


def normalise(frames: torch.Tensor, normalization: Normalization,
              device: Optional[torch.device] = None) -> torch.Tensor:
    """Return N x 3 x H x W network input from N x H x W x 3 uint8 frames already in order."""
    scale, shift = (torch.from_numpy(v).view(1, 3, 1, 1).to(device)
                    for v in normalization.scale_shift())
    return frames.to(device).permute(0, 3, 1, 2).float() * scale + shift
