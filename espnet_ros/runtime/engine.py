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
The inference engine: uint8 camera images in, uint8 class labels out; no ROS.

Per frame: resize to the network resolution, normalise exactly as the authors trained, run
the network on the chosen device and precision, take the arg-max class, and bring the labels
back to the input resolution. Images are H x W x 3 uint8 in RGB or BGR order (say which: a
BGR camera feeding a BGR-trained ESPNet is never converted).
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from espnet_ros.runtime.mixed_precision import cpu_bf16_supported, supports_mixed_precision
from espnet_ros.runtime.options import (Backend, ChannelOrder, choice_error, DEFAULT_BACKEND,
                                        device_error, OutputResolution, Precision)
from espnet_ros.runtime.runners import build_runner, class_labels, resolve_backend, upsample_logits
from espnet_ros.zoo.registry import get_spec, load, ModelSpec

# The dtype of the tensors between layers; 'mixed' is fp32 with bf16 in the convolutions
# the network names as tolerant of it (see espnet_ros.runtime.mixed_precision).
DTYPES = {Precision.FP32: torch.float32, Precision.FP16: torch.float16,
          Precision.BF16: torch.bfloat16, Precision.MIXED: torch.float32}


class EngineConfigError(ValueError):
    """A device, precision or resolution the engine cannot use, with the reason."""


@dataclass(frozen=True)
class SegmentationResult:
    """One frame's output: ``labels`` H x W uint8 class ids, ``confidence`` H x W float32."""

    labels: np.ndarray
    confidence: Optional[np.ndarray] = None


def resolve_device(device: str) -> torch.device:
    """Return the torch device for 'auto', 'cpu', 'cuda' or 'cuda:N'; refuse unusable ones."""
    reason = device_error(device)
    if reason:
        raise EngineConfigError(reason)
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    resolved = torch.device(device)
    if resolved.type == 'cuda':
        if not torch.cuda.is_available():
            raise EngineConfigError(f'device {device!r} asked for, but CUDA is not available '
                                    f'(torch {torch.__version__}, built for CUDA '
                                    f'{torch.version.cuda}); use device cpu or auto')
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise EngineConfigError(f'device {device!r}: only {torch.cuda.device_count()} CUDA '
                                    'devices are present')
    return resolved


def free_cached_gpu_memory() -> None:
    """Return the memory PyTorch's CUDA allocator holds but does not use to the driver."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def resolve_precision(precision: str, device: torch.device, *, backend: str = 'torch',
                      mixed_supported: bool = True) -> str:
    """
    Return the precision to use for 'auto', 'fp32', 'fp16', 'bf16' or 'mixed' on ``device``.

    'auto' is fp16 on CUDA. On the CPU it is 'mixed' for a compiled network that supports it
    on a CPU with native bf16, else fp32: plain bf16 was faster but its labels agreed with
    fp32 on under 99.5% of pixels, and eager 'mixed' gained nothing (see the README).
    """
    mixed_possible = (device.type == 'cpu' and mixed_supported and cpu_bf16_supported())
    reason = choice_error(Precision, 'precision', precision)
    if reason:
        raise EngineConfigError(reason)
    if precision == Precision.AUTO:
        if device.type == 'cuda':
            return Precision.FP16.value
        compiled = backend == Backend.TORCH_COMPILE
        return (Precision.MIXED if compiled and mixed_possible else Precision.FP32).value
    if precision == Precision.FP16 and device.type == 'cpu':
        raise EngineConfigError('precision fp16 is for CUDA devices; on the CPU use fp32, '
                                'mixed or bf16')
    if precision == Precision.MIXED and not mixed_possible:
        raise EngineConfigError(
            'precision mixed needs the CPU (on CUDA use fp16), native bf16 on it '
            f'(AVX512-BF16 or AMX: {"present" if cpu_bf16_supported() else "absent"}) and a '
            'network that names its bf16-tolerant convolutions (the ESPNet family does; '
            f'this one {"does" if mixed_supported else "does not"})')
    return Precision(precision).value


def check_input_size(spec: ModelSpec, size: tuple[int, int]) -> tuple[int, int]:
    """Return ``size`` (width, height) if the network can run at it, else raise."""
    multiple = spec.size_multiple
    width, height = size
    if width <= 0 or height <= 0 or width % multiple or height % multiple:
        raise EngineConfigError(f'network input {width}x{height} for {spec.name}: width and '
                                f'height must be positive multiples of {multiple}')
    return width, height


class SegmentationEngine:
    """A loaded network with its pre- and post-processing, on one device and precision."""

    def __init__(self, spec: ModelSpec, network: nn.Module, *,
                 input_size: Optional[tuple[int, int]] = None, device: str = 'cpu',
                 precision: str = Precision.FP32, backend: str = DEFAULT_BACKEND,
                 preprocess_on_device: bool = True,
                 runner_options: Optional[Mapping[str, bool]] = None) -> None:
        """
        Prepare ``network`` to run on ``device`` in ``precision`` through ``backend``.

        ``preprocess_on_device`` resizes on the GPU (uint8 upload) rather than with OpenCV;
        ``runner_options`` (fold, channels_last, cuda_graph) switch the backend's fast paths.
        The benchmark turns them off one by one. Building an engine changes nothing
        process-wide: see :mod:`espnet_ros.runtime.process` for what a long-running program
        may opt in to.
        """
        self.spec = spec
        self.preprocess_on_device = preprocess_on_device
        self.input_size = check_input_size(spec, tuple(input_size or spec.input_size))
        self.device = resolve_device(device)
        try:
            self.backend = resolve_backend(backend, self.device)
        except ValueError as error:
            raise EngineConfigError(str(error)) from None
        self.precision = resolve_precision(precision, self.device, backend=self.backend,
                                           mixed_supported=supports_mixed_precision(network))
        self.dtype = DTYPES[Precision(self.precision)]
        if self.backend == Backend.ONNXRUNTIME and self.precision != Precision.FP32:
            raise EngineConfigError(f'backend onnxruntime runs fp32 only, not {self.precision}')
        self.network = network.eval()
        self.runner = build_runner(self.network, backend=self.backend, device=self.device,
                                   dtype=self.dtype, input_size=self.input_size,
                                   mixed=self.precision == Precision.MIXED,
                                   **(runner_options or {}))
        scale, shift = spec.normalization.scale_shift()
        self._scale = torch.from_numpy(scale).view(1, 3, 1, 1).to(self.device)
        self._shift = torch.from_numpy(shift).view(1, 3, 1, 1).to(self.device)

    @classmethod
    def from_pretrained(cls, name: str, *, weights_dir: Optional[Union[str, Path]] = None,
                        checkpoint: Optional[Union[str, Path]] = None,
                        allow_unverified: bool = False,
                        input_size: Optional[tuple[int, int]] = None, device: str = 'cpu',
                        precision: str = Precision.FP32, backend: str = DEFAULT_BACKEND
                        ) -> 'SegmentationEngine':
        """Load registry model ``name`` (see :func:`~espnet_ros.zoo.registry.load`)."""
        spec = get_spec(name)
        # Check what is cheap before the checkpoint is read.
        check_input_size(spec, tuple(input_size or spec.input_size))
        resolve_precision(precision, resolve_device(device), backend=backend)
        network = load(name, weights_dir, checkpoint=checkpoint,
                       allow_unverified=allow_unverified)
        return cls(spec, network, input_size=input_size, device=device, precision=precision,
                   backend=backend)

    def warm_up(self, frames: int) -> None:
        """
        Run blank frames so that the first camera frame does not pay for lazy set-up.

        Labels only: with a compiled backend, the graph that also gives confidence is
        compiled at the first frame that asks for it.
        """
        width, height = self.input_size
        blank = np.zeros((height, width, 3), np.uint8)
        for _ in range(frames):
            self.segment(blank, output_resolution=OutputResolution.NETWORK)

    def release(self) -> None:
        """Move the network to host memory and return its GPU memory to the driver."""
        self.runner.release()

    def to_device(self) -> None:
        """Move the network back to its device after :meth:`release`."""
        self.runner.to_device()

    def preprocess(self, images: Sequence[np.ndarray], order: str = ChannelOrder.RGB
                   ) -> torch.Tensor:
        """Return N x 3 x h x w normalised network input on the device from H x W x 3 uint8."""
        reason = choice_error(ChannelOrder, 'channel order', order)
        if reason:
            raise ValueError(reason)
        width, height = self.input_size
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f'expected an H x W x 3 uint8 image, got {image.shape} '
                                 f'{image.dtype}')
        if self.device.type == 'cuda' and self.preprocess_on_device:
            # Upload uint8 (4x fewer bytes than float) and resize on the GPU.
            batch = torch.stack([torch.from_numpy(np.ascontiguousarray(image))
                                 for image in images]).to(self.device, non_blocking=True)
            batch = batch.permute(0, 3, 1, 2).float()
            if batch.shape[-2:] != (height, width):
                batch = F.interpolate(batch, size=(height, width), mode='bilinear',
                                      align_corners=False)
        else:
            resized = [image if image.shape[:2] == (height, width)
                       else cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
                       for image in images]
            batch = torch.from_numpy(np.stack(resized)).to(self.device, non_blocking=True)
            batch = batch.permute(0, 3, 1, 2).float()
        if order != self.spec.normalization.channel_order:
            batch = batch.flip(1)
        return (batch * self._scale + self._shift).to(self.dtype)

    @torch.inference_mode()
    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """Return logits N x C x h x w at the network resolution for a preprocessed batch."""
        return upsample_logits(self.runner(batch), batch.shape[-2:])

    @torch.inference_mode()
    def labels_and_confidence(self, batch: torch.Tensor, *, with_confidence: bool = False
                              ) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Return N x h x w uint8 labels (and float32 confidence) for a preprocessed batch."""
        if not with_confidence:
            return self.runner.labels(batch).cpu().numpy(), None
        logits = self.infer(batch)
        return (class_labels(logits).cpu().numpy(),
                logits.float().softmax(1).amax(1).cpu().numpy())

    @staticmethod
    def postprocess(labels: np.ndarray, confidence: Optional[np.ndarray],
                    output_sizes: Sequence[tuple[int, int]]) -> list[SegmentationResult]:
        """Return per-image labels (and confidence) resized to each (height, width)."""
        results = []
        for index, (height, width) in enumerate(output_sizes):
            frame_labels = labels[index]
            frame_confidence = confidence[index] if confidence is not None else None
            if frame_labels.shape != (height, width):
                frame_labels = cv2.resize(frame_labels, (width, height),
                                          interpolation=cv2.INTER_NEAREST)
                if frame_confidence is not None:
                    frame_confidence = cv2.resize(frame_confidence, (width, height),
                                                  interpolation=cv2.INTER_LINEAR)
            results.append(SegmentationResult(frame_labels, frame_confidence))
        return results

    def segment_batch(self, images: Sequence[np.ndarray], *, order: str = ChannelOrder.RGB,
                      output_resolution: str = OutputResolution.INPUT,
                      with_confidence: bool = False) -> list[SegmentationResult]:
        """Segment several H x W x 3 uint8 images (sizes may differ) in one network call."""
        reason = choice_error(OutputResolution, 'output_resolution', output_resolution)
        if reason:
            raise ValueError(reason)
        labels, confidence = self.labels_and_confidence(self.preprocess(images, order),
                                                        with_confidence=with_confidence)
        if output_resolution == OutputResolution.INPUT:
            sizes = [image.shape[:2] for image in images]
        else:
            sizes = [labels.shape[-2:]] * len(images)
        return self.postprocess(labels, confidence, sizes)

    def segment(self, image: np.ndarray, *, order: str = ChannelOrder.RGB,
                output_resolution: str = OutputResolution.INPUT,
                with_confidence: bool = False) -> SegmentationResult:
        """Segment one H x W x 3 uint8 image."""
        return self.segment_batch([image], order=order, output_resolution=output_resolution,
                                  with_confidence=with_confidence)[0]
