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
One camera frame through the engine to every requested output image; no ROS import.

The node, the demo and the benchmark all run frames through :func:`run_frame`, so what is
measured is what is published. Outputs that are not requested are not rendered.
"""

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from espnet_ros.imaging.codec import DecodedImage
from espnet_ros.imaging.render import colorize, overlay
from espnet_ros.runtime.engine import SegmentationEngine


@dataclass(frozen=True)
class OutputRequest:
    """Which outputs to produce for a frame (labels are always computed)."""

    color: bool = False
    overlay: bool = False
    confidence: bool = False
    output_resolution: str = 'input'
    alpha: float = 0.5


@dataclass(frozen=True)
class FrameOutputs:
    """A frame's outputs: H x W uint8 labels, H x W x 3 RGB colour and overlay, H x W float32."""

    labels: np.ndarray
    color: Optional[np.ndarray] = None
    overlay: Optional[np.ndarray] = None
    confidence: Optional[np.ndarray] = None


def run_frame(engine: SegmentationEngine, image: DecodedImage,
              request: OutputRequest) -> FrameOutputs:
    """Segment ``image`` and render the requested outputs at the requested resolution."""
    result = engine.segment(image.pixels, order=image.order,
                            output_resolution=request.output_resolution,
                            with_confidence=request.confidence)
    color = blended = None
    if request.color or request.overlay:
        color = colorize(result.labels, engine.spec.dataset.palette)
    if request.overlay:
        height, width = result.labels.shape
        camera = image.pixels
        if camera.shape[:2] != (height, width):
            camera = cv2.resize(camera, (width, height), interpolation=cv2.INTER_AREA)
        blended = overlay(camera, color, request.alpha, image_order=image.order)
    return FrameOutputs(result.labels, color if request.color else None, blended,
                        result.confidence)
