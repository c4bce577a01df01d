#!/usr/bin/env python3
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
Picture the labelled cloud (rviz2 is not needed): the Cityscapes sample over a flat world.

The real model segments the shared Cityscapes image; the depth is that of a known flat
world (ground 1.5 m below the camera, a facade at 20 m), as :mod:`espnet_ros.tools.
depth_scenes` makes it; the cloud is built by the node's own code and drawn in the class
colours it carries, seen from above and from behind the camera.

    .venv/bin/python scripts/render_cloud.py --out docs/cloud_by_class.png
"""

import argparse
from pathlib import Path

import cv2
import matplotlib
import numpy as np

from espnet_ros.imaging.cloud import build_cloud
from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.streaming.clouds import label_colours
from espnet_ros.tools.depth_scenes import flat_world, pinhole_k
from espnet_ros.zoo.registry import DEFAULT_MODEL

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the file-only backend

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO.parent / 'shared' / 'data' / 'cityscapes' / 'frankfurt_000000_000576_leftImg8bit.png'
CAMERA_SIZE = (512, 256)
CAMERA_HEIGHT_M, FACADE_M, MAX_DEPTH_M = 1.5, 20.0, 25.0
HORIZONTAL_FOV_DEG = 80.0
EVERY_NTH_POINT = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--out', type=Path, default=REPO / 'docs' / 'cloud_by_class.png')
    args = parser.parse_args()
    bgr = cv2.resize(cv2.imread(str(IMAGE)), CAMERA_SIZE, interpolation=cv2.INTER_AREA)
    engine = SegmentationEngine.from_pretrained(DEFAULT_MODEL, input_size=(1024, 512),
                                                device='cpu', precision='fp32')
    labels = engine.segment(bgr, order='bgr').labels
    k = pinhole_k(CAMERA_SIZE, HORIZONTAL_FOV_DEG)
    depth = flat_world(CAMERA_SIZE, k, CAMERA_HEIGHT_M, FACADE_M)
    cloud = build_cloud(labels, depth, k, label_rgb=label_colours(engine.spec.dataset.palette),
                        max_depth=MAX_DEPTH_M, stride=1)
    points = cloud.points().reshape(-1)[::EVERY_NTH_POINT]
    points = points[np.isfinite(points['z'])]
    packed = points['rgb'].view('<u4')
    colours = np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], -1) / 255

    figure, (image_axis, top, side) = plt.subplots(1, 3, figsize=(13, 3.6),
                                                   gridspec_kw={'width_ratios': [1.3, 1, 1.2]})
    image_axis.imshow(bgr[..., ::-1])
    image_axis.set_title('camera (Cityscapes val sample)')
    image_axis.axis('off')
    top.scatter(-points['x'], points['z'], c=colours, s=2.0, linewidths=0)
    top.set(xlabel='left (m)', ylabel='forward (m)', title='cloud from above, class colours',
            aspect='equal', xlim=(-15, 15), ylim=(0, FACADE_M + 1))
    top.invert_xaxis()
    side.scatter(points['x'], -points['y'], c=colours, s=2.0, linewidths=0)
    side.set(xlabel='right (m)', ylabel='up (m)', title='cloud seen along the optical axis',
             aspect='equal', xlim=(-17, 17), ylim=(-CAMERA_HEIGHT_M - 0.2, 9))
    figure.suptitle(f'{DEFAULT_MODEL} labels back-projected with a flat-world depth '
                    f'(ground {CAMERA_HEIGHT_M} m below the camera, facade at {FACADE_M:.0f} m)',
                    fontsize=10)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=80)
    print(f'wrote {args.out} ({len(points):,} points drawn)')


if __name__ == '__main__':
    main()
