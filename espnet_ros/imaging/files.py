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

"""Image files on disk: folders expanded into their images, images read with a clear error."""

from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.ppm', '.tif', '.tiff')


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


def camera_rgb(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """
    Return a BGR picture as the contiguous H x W x 3 uint8 RGB a camera of ``size`` sends.

    ``size`` is (W, H); area interpolation, as a camera's own downscaling averages pixels.
    """
    return np.ascontiguousarray(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)[..., ::-1])
