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
What a label map and a per-class cloud cost, each against the step it follows, in one run.

At each camera size, the network's output is stood in for by seeded logits of the model's
class count at its output resolution (the camera's size divided by the network's output
stride), on the CPU. Timed, each a median over alternating repetitions:

- labels: the head's labels (upsampling, arg-max) without and with the label map's lookup;
- labels and confidence: the head's (winning class probability) against the grouped head
  (lookup, and the summed probability of the published group);
- the organized labelled cloud (:func:`build_cloud`) and one class's dense cloud taken from
  it (:func:`select_label`), for the group with the most points.

No ROS: the clouds are the message buffers the node publishes as they are.
"""

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from espnet_ros.imaging.cloud import build_cloud, select_label
from espnet_ros.runtime import head
from espnet_ros.runtime.label_groups import DeviceLabelMap, grouped_labels_and_confidence
from espnet_ros.streaming.clouds import label_colours
from espnet_ros.tools.depth_scenes import floor_and_wall
from espnet_ros.tools.procfs import cpu_model
from espnet_ros.tools.timing import alternating_times
from espnet_ros.zoo.label_map import load_for_dataset
from espnet_ros.zoo.registry import DEFAULT_MODEL, get_spec

MIN_DEPTH_M, MAX_DEPTH_M = 0.1, 10.0
CONFIG_DIR = Path(__file__).resolve().parents[2] / 'config'
DEFAULT_LABEL_MAP = CONFIG_DIR / 'cityscapes_groups.yaml'


def _medians(paths: dict[str, Callable[[], Any]], repeats: int, warmup: int
             ) -> dict[str, float]:
    """Return each path's median time (ms), runs alternating between the paths."""
    return {name: float(np.median(values))
            for name, values in alternating_times(paths, repeats, warmup).items()}


def run(sizes: Sequence[tuple[int, int]], repeats: int, warmup: int, *,
        model: str = DEFAULT_MODEL, label_map: Path = DEFAULT_LABEL_MAP
        ) -> list[dict[str, Any]]:
    """Time grouping and the per-class cloud at every size; return one row per size."""
    spec = get_spec(model)
    groups = DeviceLabelMap(load_for_dataset(label_map, spec.dataset), torch.device('cpu'))
    published = groups.label_map
    rows = []
    for size in sizes:
        width, height = size
        stride = spec.output_stride
        generator = torch.Generator().manual_seed(0)
        logits = torch.randn(1, spec.num_classes, height // stride, width // stride,
                             generator=generator)
        grid = (height, width)
        with torch.inference_mode():
            timed = _medians({
                'labels': lambda: head.labels(logits, grid),
                'grouped_labels': lambda: groups.labels(head.labels(logits, grid)),
                'confidence': lambda: head.labels_and_confidence(logits, grid),
                'grouped_confidence': lambda: grouped_labels_and_confidence(logits, grid,
                                                                            groups),
            }, repeats, warmup)
            labels = groups.labels(head.labels(logits, grid))[0].numpy()
        metres, k = floor_and_wall(size)
        colours = label_colours(published.palette)
        cloud = build_cloud(labels, metres, k, label_rgb=colours, min_depth=MIN_DEPTH_M,
                            max_depth=MAX_DEPTH_M)
        counts = np.bincount(labels.ravel(), minlength=len(published.groups))
        chosen = int(np.argmax(counts[:len(published.groups)]))
        timed.update(_medians({
            'cloud': lambda: build_cloud(labels, metres, k, label_rgb=colours,
                                         min_depth=MIN_DEPTH_M, max_depth=MAX_DEPTH_M),
            'class_cloud': lambda: select_label(cloud, chosen),
        }, repeats, warmup))
        rows.append({
            'size': f'{width}x{height}', 'network_output': f'{width // stride}x'
            f'{height // stride}', 'classes': spec.num_classes,
            'groups': len(published.groups), 'repeats': repeats,
            **{f'{name}_median_ms': value for name, value in timed.items()},
            'lookup_ms': timed['grouped_labels'] - timed['labels'],
            'grouped_confidence_extra_ms': timed['grouped_confidence'] - timed['confidence'],
            'class': published.groups[chosen].name,
            'class_points': select_label(cloud, chosen).width,
            'points': cloud.height * cloud.width,
            'threads': torch.get_num_threads(), 'cpu': cpu_model(),
        })
    return rows
