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
import math
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from espnet_ros.runtime.graph_builder import prepare_network
from espnet_ros.runtime.graph_cache import PackagedGraph
from espnet_ros.runtime.graph_key import graph_key
from espnet_ros.runtime.graph_store import cache_folder, Entry
from espnet_ros.runtime.graph_switch import GraphSwitch
from espnet_ros.runtime.mixed_precision import cpu_bf16_supported, supports_mixed_precision
from espnet_ros.runtime.options import (Backend, ChannelOrder, choice_error, CompileMode,
                                        DEFAULT_BACKEND, device_error, OutputResolution,
                                        Precision)
from espnet_ros.runtime.runners import build_runner, class_labels, resolve_backend, upsample_logits
from espnet_ros.zoo.registry import FAMILIES, get_spec, load, ModelSpec

# The dtype of the tensors between layers; 'mixed' is fp32 with bf16 in the convolutions
# the network names as tolerant of it (see espnet_ros.runtime.mixed_precision).
DTYPES = {Precision.FP32: torch.float32, Precision.FP16: torch.float16,
          Precision.BF16: torch.bfloat16, Precision.MIXED: torch.float32,
          Precision.INT8: torch.float32}  # int8 inside the ONNX graph, float at its input


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


def probe_frame(width: int, height: int) -> np.ndarray:
    """
    Return a fixed H x W x 3 uint8 RGB frame of smooth colour waves.

    A compiled graph's labels are checked against the eager network's on it: smooth regions,
    so that labels sit far from ties except along a few class borders.
    """
    rows, columns = np.mgrid[0:height, 0:width].astype(np.float32)
    waves = [np.sin(2 * np.pi * (columns / width * cycles + rows / height * (3 - cycles)))
             for cycles in (1, 2, 3)]
    return np.ascontiguousarray(np.stack(
        [np.round(127.5 * (1 + wave)) for wave in waves], axis=-1).astype(np.uint8))


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
    if precision == Precision.INT8 and (device.type != 'cpu' or backend != Backend.ONNXRUNTIME):
        raise EngineConfigError('precision int8 runs on the CPU with backend onnxruntime '
                                f'(static quantization); got device {device}, backend {backend}')
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


def check_input_size(spec: ModelSpec, size: Optional[Sequence[int]]) -> tuple[int, int]:
    """
    Return the network input (width, height) that ``size`` asks for, or raise with the reason.

    None or 0x0 is the training size. A side given as 0 follows the other at the training
    aspect ratio, rounded to the nearest multiple of the network's stride
    (``spec.size_multiple``); a side given must be a positive multiple of it.
    """
    multiple = spec.size_multiple
    width, height = tuple(size) if size else (0, 0)
    for side, value in (('width', width), ('height', height)):
        if value < 0 or value % multiple:
            lower = value // multiple * multiple
            nearest = f'{lower} or {lower + multiple}' if lower > 0 else str(multiple)
            raise EngineConfigError(
                f'network input {side} {value} for {spec.name}: width and height must be '
                f"positive multiples of {multiple}, the network's stride (nearest: {nearest}; "
                '0 follows the other side at the training aspect ratio)')
    train_width, train_height = spec.input_size
    if not width and not height:
        return train_width, train_height
    if not height:
        height = nearest_multiple(width * train_height / train_width, multiple)
    elif not width:
        width = nearest_multiple(height * train_width / train_height, multiple)
    return width, height


def nearest_multiple(value: float, multiple: int) -> int:
    """Return the positive multiple of ``multiple`` nearest to ``value`` (halves round up)."""
    return max(math.floor(value / multiple + 0.5), 1) * multiple


def describe_input_size(spec: ModelSpec, size: Optional[Sequence[int]]) -> str:
    """Return 'WxH' as run for ``size``, saying where a side given as 0 came from."""
    width, height = check_input_size(spec, size)
    asked = tuple(size) if size else (0, 0)
    text = f'{width}x{height}'
    if asked == (0, 0):
        return f'{text} (the training size)'
    if 0 in asked:
        derived = 'height' if asked[1] == 0 else 'width'
        return (f'{text} ({derived} from the training aspect ratio '
                f'{spec.input_size[0]}x{spec.input_size[1]}, rounded to a multiple of '
                f'{spec.size_multiple})')
    return text


class SegmentationEngine:
    """A loaded network with its pre- and post-processing, on one device and precision."""

    def __init__(self, spec: ModelSpec, network: nn.Module, *,
                 input_size: Optional[tuple[int, int]] = None, device: str = 'cpu',
                 precision: str = Precision.FP32, backend: str = DEFAULT_BACKEND,
                 preprocess_on_device: bool = True,
                 runner_options: Optional[Mapping[str, bool]] = None,
                 calibration: Optional[Sequence[np.ndarray]] = None,
                 compile_mode: str = CompileMode.EAGER, cache: Optional[Path] = None,
                 autotune: bool = True, log: Callable[[str], None] = lambda message: None,
                 warn: Optional[Callable[[str], None]] = None) -> None:
        """
        Prepare ``network`` to run on ``device`` in ``precision`` through ``backend``.

        ``preprocess_on_device`` resizes on the GPU (uint8 upload) rather than with OpenCV;
        ``runner_options`` (fold, channels_last, cuda_graph) switch the backend's fast paths.
        The benchmark turns them off one by one. ``calibration``: H x W x 3 uint8 RGB frames of
        the model's own dataset, which precision int8 needs. ``compile_mode`` (backend auto
        on the CPU): switch to a compiled graph from the ``cache`` folder (default
        :func:`~espnet_ros.runtime.graph_store.cache_folder`), built in the background if
        'background', with ``autotune``; ``log`` hears each step and ``warn`` a failure (see
        :mod:`espnet_ros.runtime.graph_switch`). Building an engine changes nothing
        process-wide: see :mod:`espnet_ros.runtime.process` for what a long-running program
        may opt in to.
        """
        self.spec = spec
        self.preprocess_on_device = preprocess_on_device
        self.input_size = check_input_size(spec, input_size)
        self.device = resolve_device(device)
        try:
            self.backend = resolve_backend(backend, self.device)
        except ValueError as error:
            raise EngineConfigError(str(error)) from None
        self.precision = resolve_precision(precision, self.device, backend=self.backend,
                                           mixed_supported=supports_mixed_precision(network))
        self.dtype = DTYPES[Precision(self.precision)]
        onnx_precisions = (Precision.FP32, Precision.INT8)
        if self.backend == Backend.ONNXRUNTIME and self.precision not in onnx_precisions:
            raise EngineConfigError(f'backend onnxruntime runs fp32 or int8, not {self.precision}')
        if self.precision == Precision.INT8 and not calibration:
            raise EngineConfigError("precision int8 needs calibration frames of the model's own "
                                    'dataset (espnet-ros: --calibration DIR)')
        self.network = network.eval()
        scale, shift = spec.normalization.scale_shift()
        self._scale = torch.from_numpy(scale).view(1, 3, 1, 1).to(self.device)
        self._shift = torch.from_numpy(shift).view(1, 3, 1, 1).to(self.device)
        batches = None
        if self.precision == Precision.INT8:  # preprocessed as the frames will be
            batches = [self.preprocess([frame]).cpu().numpy() for frame in calibration]
        self.runner = build_runner(self.network, backend=self.backend, device=self.device,
                                   dtype=self.dtype, input_size=self.input_size,
                                   mixed=self.precision == Precision.MIXED,
                                   int8_calibration=batches, **(runner_options or {}))
        self._graph: Optional[PackagedGraph] = None
        self.graph_switch: Optional[GraphSwitch] = None
        reason = choice_error(CompileMode, 'compile_mode', compile_mode)
        if reason:
            raise EngineConfigError(reason)
        if compile_mode != CompileMode.EAGER:
            self._start_switch(backend, precision, compile_mode, cache, autotune, log,
                               warn or log)

    def _compiled_precision(self, backend: str, precision: str) -> tuple[Optional[str], str]:
        """Return the precision of a cached compiled graph, or None and why there is none."""
        if backend != Backend.AUTO or self.device.type != 'cpu':
            return None, (f'compiled graphs are cached for backend auto on the CPU (here '
                          f'backend {backend} on {self.device})')
        if self.spec.family not in FAMILIES:
            return None, f'{self.spec.name} is not of a registry architecture'
        compiled = resolve_precision(precision, self.device, backend=Backend.TORCH_COMPILE,
                                     mixed_supported=supports_mixed_precision(self.network))
        if compiled not in (Precision.FP32, Precision.MIXED):
            return None, f'compiled graphs are built in fp32 or mixed, not {compiled}'
        return compiled, ''

    def _start_switch(self, backend: str, precision: str, mode: str, cache: Optional[Path],
                      autotune: bool, log: Callable[[str], None],
                      warn: Callable[[str], None]) -> None:
        compiled, reason = self._compiled_precision(backend, precision)
        if compiled is None:
            log(f'compile_mode {mode}: {reason}; running eager only')
            return
        key = graph_key(self.spec.name, self.network, input_size=self.input_size,
                        precision=compiled, threads=torch.get_num_threads(),
                        device=self.device)
        width, height = self.input_size
        probe = self.preprocess([probe_frame(width, height)]).float()
        self.graph_switch = GraphSwitch(
            Entry(cache or cache_folder(), key), mode=mode, network=self.network,
            reference=prepare_network(self.network, compiled), probe=probe,
            family=self.spec.family, architecture=dict(self.spec.architecture),
            num_classes=self.spec.num_classes, autotune=autotune, on_ready=self._use_graph,
            log=log, warn=warn).start()

    def _use_graph(self, graph: PackagedGraph) -> None:
        """Take the compiled graph from the next frame on (one assignment, see graph_switch)."""
        self._graph = graph

    @property
    def compiled(self) -> bool:
        """Return True once frames run on a compiled graph from the cache."""
        return self._graph is not None

    def describe_runner(self) -> str:
        """Return what runs the frames now, e.g. 'compiled graph (mixed)' or 'torch (fp32)'."""
        if self._graph is not None:
            return f'compiled graph ({self._graph.key.precision})'
        return f'{self.backend} ({self.precision})'

    def close(self) -> None:
        """Stop a compiled-graph switch (and its build); the engine goes on serving eager."""
        if self.graph_switch is not None:
            self.graph_switch.close()

    @classmethod
    def from_pretrained(cls, name: str, *, weights_dir: Optional[Union[str, Path]] = None,
                        checkpoint: Optional[Union[str, Path]] = None,
                        allow_unverified: bool = False,
                        input_size: Optional[tuple[int, int]] = None, device: str = 'cpu',
                        precision: str = Precision.FP32, backend: str = DEFAULT_BACKEND,
                        calibration: Optional[Sequence[np.ndarray]] = None,
                        compile_mode: str = CompileMode.EAGER,
                        log: Callable[[str], None] = lambda message: None,
                        warn: Optional[Callable[[str], None]] = None
                        ) -> 'SegmentationEngine':
        """Load registry model ``name`` (see :func:`~espnet_ros.zoo.registry.load`)."""
        spec = get_spec(name)
        # Check what is cheap before the checkpoint is read.
        check_input_size(spec, input_size)
        resolve_precision(precision, resolve_device(device), backend=backend)
        network = load(name, weights_dir, checkpoint=checkpoint,
                       allow_unverified=allow_unverified)
        return cls(spec, network, input_size=input_size, device=device, precision=precision,
                   backend=backend, calibration=calibration, compile_mode=compile_mode, log=log,
                   warn=warn)

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
        graph = self._graph
        if graph is not None and graph.fits(batch):
            labels, confidence = graph(batch)
            return labels.numpy(), confidence.numpy() if with_confidence else None
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
