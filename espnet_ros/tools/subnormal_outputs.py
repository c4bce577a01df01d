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
What setting subnormal weights to zero does to the outputs, measured in one run; no ROS.

The flushed network runs against the checkpoint as loaded, on the same frames, both the
authors' way (eager fp32, batch norms unfolded, NCHW), so that the flush is the only
difference. Per frame set: the relative error of the logits (L2 norm of
the difference over the L2 norm of the as-loaded logits, per frame: mean and largest), the
largest absolute logit difference, the fraction of pixels labelled alike at the frames'
resolution, and, where the set has ground truth of the model's dataset, mean IoU both ways.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import cv2
import numpy as np
import torch

from espnet_ros.imaging.files import read_bgr
from espnet_ros.imaging.metrics import ConfusionMatrix, mean_iou, protocol_ignore
from espnet_ros.networks.subnormals import count_subnormals
from espnet_ros.runtime.config import EngineConfig, RunnerOptions
from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.runtime.postprocess import class_labels, upsample_logits
from espnet_ros.tools.procfs import cpu_model
from espnet_ros.zoo.registry import get_spec, load

PROTOCOL = 'ignore-void'
# The authors' arrangement of the network, with or without the flush.
AUTHORS_RUNNER = {'fold': False, 'channels_last': False, 'fused_head': False}


@dataclass(frozen=True)
class FrameSet:
    """Frames to compare on; ``labels`` (same stems) and their dataset for mean IoU."""

    name: str
    images: Sequence[Path]
    labels: Optional[dict[str, Path]] = None  # stem -> label PNG
    dataset: Optional[str] = None


def _engine(name: str, network: torch.nn.Module, size: Optional[tuple[int, int]],
            keep_subnormals: bool) -> SegmentationEngine:
    return SegmentationEngine(get_spec(name), network, EngineConfig(
        input_size=size, device='cpu', precision='fp32', backend='torch',
        runner=RunnerOptions(**AUTHORS_RUNNER, keep_subnormals=keep_subnormals)))


def _labels_and_logits(engine: SegmentationEngine, image: np.ndarray
                       ) -> tuple[np.ndarray, torch.Tensor]:
    """Return labels at the image's resolution and the network's own logits."""
    batch = engine.preprocess([image], order='bgr')
    with torch.inference_mode():
        logits = engine.runner(batch).float()
        labels = class_labels(upsample_logits(logits, batch.shape[-2:]))[0].numpy()
    if labels.shape != image.shape[:2]:
        labels = cv2.resize(labels, (image.shape[1], image.shape[0]),
                            interpolation=cv2.INTER_NEAREST)
    return labels, logits


def compare_model(name: str, frame_sets: Sequence[FrameSet], *, weights_dir: Optional[Path],
                  size: Optional[tuple[int, int]] = None,
                  progress: Callable[[str], None] = lambda text: None) -> dict[str, Any]:
    """Return the comparison of ``name`` flushed against as loaded over ``frame_sets``."""
    spec = get_spec(name)
    as_loaded = load(name, weights_dir, keep_subnormals=True, log=lambda text: None)
    subnormals = count_subnormals(as_loaded)
    engines = {'flushed': _engine(name, load(name, weights_dir, log=lambda text: None),
                                  size, False),
               'as_loaded': _engine(name, as_loaded, size, True)}
    result: dict[str, Any] = {
        'model': name, 'size': '{}x{}'.format(*engines['flushed'].input_size),
        'subnormal_weights': subnormals, 'threads': torch.get_num_threads(),
        'cpu': cpu_model()['name'], 'runner': 'eager fp32, batch norms unfolded, NCHW',
        'sets': {}}
    for frames in frame_sets:
        scored = frames.labels is not None and frames.dataset == spec.dataset.name
        matrices = {way: ConfusionMatrix(spec.num_classes) for way in engines}
        ignore = protocol_ignore(PROTOCOL, spec.dataset.void_class)
        errors, largest, equal, pixels = [], 0.0, 0, 0
        for index, path in enumerate(frames.images):
            image = read_bgr(path)
            (flushed, flushed_logits), (loaded, loaded_logits) = (
                _labels_and_logits(engines[way], image) for way in ('flushed', 'as_loaded'))
            difference = flushed_logits - loaded_logits
            errors.append(float(difference.norm() / loaded_logits.norm()))
            largest = max(largest, float(difference.abs().max()))
            equal += int((flushed == loaded).sum())
            pixels += loaded.size
            if scored:
                truth = cv2.imread(str(frames.labels[path.stem]), cv2.IMREAD_UNCHANGED)
                matrices['flushed'].update(flushed, truth, ignore=ignore)
                matrices['as_loaded'].update(loaded, truth, ignore=ignore)
            progress(f'{name} {frames.name} {index + 1}/{len(frames.images)}')
        entry: dict[str, Any] = {
            'frames': len(frames.images), 'label_agreement': equal / pixels,
            'differing_pixels': pixels - equal, 'pixels': pixels,
            'logits_relative_error_mean': float(np.mean(errors)),
            'logits_relative_error_max': float(np.max(errors)),
            'logits_max_abs_difference': largest}
        if scored:
            entry.update(protocol=PROTOCOL, **{
                f'miou_{way}': float(mean_iou(matrix, spec.dataset.void_class))
                for way, matrix in matrices.items()})
        result['sets'][frames.name] = entry
    return result
