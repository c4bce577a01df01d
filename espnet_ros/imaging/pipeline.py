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
measured is what is published. Outputs that are not requested are not rendered, and the
colour and overlay pictures only when first read: a node publishes the labels, which
planners wait for, before it spends time on the pictures a person looks at.
"""

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

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


Views = tuple[Optional[np.ndarray], Optional[np.ndarray]]


class FrameOutputs:
    """
    A frame's outputs: H x W uint8 labels, H x W x 3 RGB colour and overlay, H x W float32.

    Colour and overlay are either given or rendered by ``views`` when one of them is first
    read (once; one thread reads a frame's outputs).
    """

    __slots__ = ('labels', 'confidence', '_color', '_overlay', '_views')

    def __init__(self, labels: np.ndarray, color: Optional[np.ndarray] = None,
                 overlay: Optional[np.ndarray] = None,
                 confidence: Optional[np.ndarray] = None, *,
                 views: Optional[Callable[[], Views]] = None) -> None:
        """Hold the outputs; ``views`` returns (colour, overlay) in place of the two given."""
        self.labels = labels
        self.confidence = confidence
        self._color, self._overlay, self._views = color, overlay, views

    @property
    def color(self) -> Optional[np.ndarray]:
        """Return the H x W x 3 RGB colour image, or None if it was not requested."""
        self._render()
        return self._color

    @property
    def overlay(self) -> Optional[np.ndarray]:
        """Return the H x W x 3 overlay in the camera's channel order, or None."""
        self._render()
        return self._overlay

    def _render(self) -> None:
        if self._views is not None:
            views, self._views = self._views, None
            self._color, self._overlay = views()


def run_frame(engine: SegmentationEngine, image: DecodedImage,
              request: OutputRequest) -> FrameOutputs:
    """Segment ``image`` and render the requested outputs at the requested resolution."""
    return run_batch(engine, [image], request)[0]


def run_batch(engine: SegmentationEngine, images: Sequence[DecodedImage],
              request: OutputRequest) -> list[FrameOutputs]:
    """
    Segment ``images`` in one network call and render each frame's requested outputs.

    Offline runs batch frames for throughput; the node passes one. Frames in another channel
    order than the first are swapped into it, so one batch may mix rgb8 and bgr8 cameras.
    """
    order = images[0].order
    pixels = [image.pixels if image.order == order
              else np.ascontiguousarray(image.to_order(order)) for image in images]
    results = engine.segment_batch(pixels, order=order,
                                   output_resolution=request.output_resolution,
                                   with_confidence=request.confidence)
    return [_render(engine, image, result.labels, result.confidence, request)
            for image, result in zip(images, results)]


def run_frames(engine: SegmentationEngine, images: Sequence[DecodedImage],
               requests: Sequence[OutputRequest]) -> list[FrameOutputs]:
    """
    Segment ``images`` in one network call and render each as its own request asks.

    For several cameras on one engine: each camera's outputs are those its subscribers take.
    Confidence is computed for the batch if any frame asks for it, and handed on only to
    those that do; every request must name the same output resolution.
    """
    resolutions = {request.output_resolution for request in requests}
    if len(resolutions) != 1 or len(requests) != len(images):
        raise ValueError(f'one request per image and one output resolution for all; got '
                         f'{len(requests)} requests for {len(images)} images at {resolutions}')
    order = images[0].order
    pixels = [image.pixels if image.order == order
              else np.ascontiguousarray(image.to_order(order)) for image in images]
    results = engine.segment_batch(pixels, order=order, output_resolution=resolutions.pop(),
                                   with_confidence=any(request.confidence
                                                       for request in requests))
    return [_render(engine, image, result.labels,
                    result.confidence if request.confidence else None, request)
            for image, result, request in zip(images, results, requests)]


def _render(engine: SegmentationEngine, image: DecodedImage, labels: np.ndarray,
            confidence: Optional[np.ndarray], request: OutputRequest) -> FrameOutputs:
    """Return one frame's outputs; colour and overlay, as ``request`` asks, when first read."""
    if not (request.color or request.overlay):
        return FrameOutputs(labels, confidence=confidence)
    palette = engine.published_spec.dataset.palette

    def views() -> Views:
        color = colorize(labels, palette)
        blended = None
        if request.overlay:
            height, width = labels.shape
            camera = image.pixels
            if camera.shape[:2] != (height, width):
                camera = cv2.resize(camera, (width, height), interpolation=cv2.INTER_AREA)
            blended = overlay(camera, color, request.alpha, image_order=image.order)
        return (color if request.color else None), blended
    return FrameOutputs(labels, confidence=confidence, views=views)
