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

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

# Re-exported: the engine's callers name the configuration's words from here.
from espnet_ros.runtime.config import (  # noqa: F401
    CACHE_MODES, check_input_size, describe_input_size, DTYPES, EngineConfig, EngineConfigError,
    nearest_multiple, resolve_device, RunnerOptions)
from espnet_ros.runtime.graph_builder import prepare_network
from espnet_ros.runtime.graph_cache import PackagedGraph
from espnet_ros.runtime.graph_key import graph_key
from espnet_ros.runtime.graph_store import cache_folder, Entry
from espnet_ros.runtime.graph_switch import GraphSwitch
from espnet_ros.runtime.label_groups import DeviceLabelMap, grouped_labels_and_confidence
from espnet_ros.runtime.mixed_precision import supports_mixed_precision
from espnet_ros.runtime.options import ChannelOrder, choice_error, OutputResolution, Precision
from espnet_ros.runtime.postprocess import upsample_logits
from espnet_ros.runtime.runners import build_runner
from espnet_ros.zoo.label_map import LabelMap
from espnet_ros.zoo.registry import get_spec, load, ModelSpec


@dataclass(frozen=True)
class SegmentationResult:
    """One frame's output: ``labels`` H x W uint8 class ids, ``confidence`` H x W float32."""

    labels: np.ndarray
    confidence: Optional[np.ndarray] = None


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


def _run_graphs(graphs: dict[int, 'PackagedGraph'], batch: torch.Tensor, *,
                with_confidence: bool) -> Optional[tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """
    Return labels (and confidence) of ``batch`` from the compiled graphs; None if none fits.

    The graph of the batch's size takes it whole; else the one-frame graph takes it frame by
    frame (a batch of several cameras that is not full).
    """
    graph = graphs.get(batch.shape[0])
    if graph is not None and graph.fits(batch):
        return graph(batch, with_confidence=with_confidence)
    single = graphs.get(1)
    if single is None or not single.fits(batch[:1]):
        return None
    parts = [single(batch[index:index + 1], with_confidence=with_confidence)
             for index in range(batch.shape[0])]
    labels = torch.cat([labels for labels, _ in parts])
    if not with_confidence:
        return labels, None
    return labels, torch.cat([confidence for _, confidence in parts])


class SegmentationEngine:
    """
    A network with its pre- and post-processing, on one device and precision.

    Building one is inert: it checks the configuration, prepares the runner on a copy of the
    network (the caller's network, its mode included, is left as it is) and starts nothing.
    :meth:`start_background` starts the compiled-graph switch that ``compile_mode`` cached
    or background asks for; :meth:`close` stops it.
    """

    def __init__(self, spec: ModelSpec, network: nn.Module,
                 config: EngineConfig = EngineConfig(), *,
                 calibration: Optional[Sequence[np.ndarray]] = None,
                 log: Callable[[str], None] = lambda message: None,
                 warn: Optional[Callable[[str], None]] = None,
                 label_map: Optional[LabelMap] = None) -> None:
        """
        Prepare ``network`` to run as ``config`` says (checked once, see ``runtime.config``).

        ``calibration``: H x W x 3 uint8 RGB frames of the model's own dataset, which
        precision int8 needs. ``log`` hears each step and ``warn`` a failure of the graph
        switch (see :mod:`espnet_ros.runtime.graph_switch`). ``label_map``: publish groups
        of the model's classes (see :meth:`use_label_map`). Building an engine changes
        nothing process-wide: see :mod:`espnet_ros.runtime.process` for what a long-running
        program may opt in to.
        """
        self.spec = spec
        self.config = config
        self.settings = config.resolve(spec, mixed_supported=supports_mixed_precision(network),
                                       calibrated=bool(calibration))
        self.input_size = self.settings.input_size
        self.device = self.settings.device
        self.backend = self.settings.backend
        self.precision = self.settings.precision
        self.dtype = self.settings.dtype
        self.preprocess_on_device = config.preprocess_on_device
        self.network = network  # read (weights, for the graph switch), never changed
        self._log = log
        self._warn = warn or log
        for note in self.settings.notes:
            log(note)
        scale, shift = spec.normalization.scale_shift()
        self._scale = torch.from_numpy(scale).view(1, 3, 1, 1).to(self.device)
        self._shift = torch.from_numpy(shift).view(1, 3, 1, 1).to(self.device)
        batches = None
        if calibration and self.precision == Precision.INT8:  # preprocessed as frames will be
            batches = [self.preprocess([frame]).cpu().numpy() for frame in calibration]
        self.runner = build_runner(network, self.settings, int8_calibration=batches)
        if self.runner.head_note:
            log('eager labels without the C kernel (the arg-max of the logits): '
                f'{self.runner.head_note}')
        # Compiled graphs by batch size, replaced as one value (see _use_graph).
        self._graphs: dict[int, PackagedGraph] = {}
        self._switch: Optional[GraphSwitch] = None
        # With batches of several frames: the one-frame graph for the batches that are not full.
        self._single_switch: Optional[GraphSwitch] = None
        # The label map on the device and the spec naming its classes, swapped as one value.
        self._grouping: Optional[tuple[DeviceLabelMap, ModelSpec]] = None
        self.use_label_map(label_map)

    def use_label_map(self, label_map: Optional[LabelMap]) -> None:
        """
        Publish the groups of ``label_map`` from the next frame on (None: the model's classes).

        The map must be for this model's classes (:func:`espnet_ros.zoo.label_map.
        load_for_dataset` of ``spec.dataset``); labels and confidence are then the groups'
        (:mod:`espnet_ros.runtime.label_groups`). One assignment: a frame in flight keeps the
        map it started with.
        """
        if label_map is not None and label_map.model_classes != self.spec.dataset.classes:
            raise ValueError(f'label map {label_map.source} is for the classes '
                             f'{", ".join(label_map.model_classes)}, not those of '
                             f'{self.spec.name}')
        self._grouping = None if label_map is None else (
            DeviceLabelMap(label_map, self.device),
            replace(self.spec, dataset=label_map.dataset(self.spec.dataset)))

    @property
    def label_map(self) -> Optional[LabelMap]:
        """Return the label map in use, or None (the model's own classes)."""
        grouping = self._grouping
        return grouping[0].label_map if grouping is not None else None

    @property
    def published_spec(self) -> ModelSpec:
        """Return the spec whose dataset names the published labels (the groups', if any)."""
        grouping = self._grouping
        return grouping[1] if grouping is not None else self.spec

    def start_background(self, batch: int = 1) -> Optional[GraphSwitch]:
        """
        Start bringing in the compiled graph that compile_mode cached or background asks for.

        ``batch``: the frames per network call the graph is for (a node serving several
        cameras runs them together). Above one, the one-frame graph is brought in too, and
        a batch that is not full runs through it frame by frame; a batch neither fits waits
        on eager.

        A thread looks for the graph in the cache (and, with background, builds a missing
        one in a child process) while the engine serves eager; frames move to the graph
        once it is loaded and checked. Return the switch, or None when there is no graph to
        bring in (the log says why). Calling it again returns the same switch.
        """
        if self._switch is not None:
            return self._switch
        settings = self.settings
        mode = settings.compile_mode
        if settings.graph_precision is None:
            if mode in CACHE_MODES:
                self._log(f'compile_mode {mode}: {settings.no_graph_reason}; running '
                          f'{self.describe_runner()} only')
            return None
        self._switch = self._start_switch(batch)
        if batch > 1:
            self._single_switch = self._start_switch(1)
        return self._switch

    def _start_switch(self, batch: int) -> GraphSwitch:
        """Start bringing in the compiled graph for batches of ``batch`` frames."""
        settings = self.settings
        key = graph_key(self.spec.name, self.network, input_size=self.input_size,
                        precision=settings.graph_precision, threads=torch.get_num_threads(),
                        device=self.device, batch=batch)
        width, height = self.input_size
        probe = self.preprocess([probe_frame(width, height)] * batch).float()
        return GraphSwitch(
            Entry(self.config.cache or cache_folder(), key), mode=settings.compile_mode,
            network=self.network,
            reference=prepare_network(self.network, settings.graph_precision), probe=probe,
            spec=self.spec.network, autotune=self.config.autotune, on_ready=self._use_graph,
            log=self._log, warn=self._warn).start()

    @property
    def graph_switch(self) -> Optional[GraphSwitch]:
        """Return the switch :meth:`start_background` started, else None."""
        return self._switch

    def describe_graph(self) -> str:
        """Return where the compiled-graph switch stands, or 'none' when none was started."""
        if self._switch is None:
            return 'none'
        if self._single_switch is None:
            return self._switch.describe()
        return (f'{self._switch.describe()}; for batches not full: '
                f'{self._single_switch.describe()}')

    def _use_graph(self, graph: PackagedGraph) -> None:
        """Take a compiled graph from the next frame on (one assignment, see graph_switch)."""
        self._graphs = {**self._graphs, graph.shape[0]: graph}

    @property
    def compiled(self) -> bool:
        """Return True once frames run on a compiled graph from the cache."""
        return bool(self._graphs)

    def describe_runner(self) -> str:
        """Return what runs the frames now, e.g. 'compiled graph (mixed)' or 'torch (fp32)'."""
        graphs = self._graphs
        if graphs:
            batches = ' and '.join(str(size) for size in sorted(graphs))
            precision = next(iter(graphs.values())).key.precision
            if list(graphs) == [1]:
                return f'compiled graph ({precision})'
            return f'compiled graphs ({precision}; batches of {batches})'
        return f'{self.backend} ({self.precision})'

    def close(self) -> None:
        """
        Stop the compiled-graph switch: its thread, and a build in progress (killed).

        A graph already switched to stays in use; the engine goes on serving either way.
        """
        for switch in (self._switch, self._single_switch):
            if switch is not None:
                switch.close()

    @classmethod
    def from_pretrained(cls, name: str, config: Optional[EngineConfig] = None, *,
                        weights_dir: Optional[Union[str, Path]] = None,
                        checkpoint: Optional[Union[str, Path]] = None,
                        allow_unverified: bool = False,
                        calibration: Optional[Sequence[np.ndarray]] = None,
                        log: Callable[[str], None] = lambda message: None,
                        warn: Optional[Callable[[str], None]] = None,
                        label_map: Optional[LabelMap] = None,
                        **options: Any) -> 'SegmentationEngine':
        """
        Load registry model ``name`` (see :func:`~espnet_ros.zoo.registry.load`).

        ``config`` (default :class:`EngineConfig`), with any of its fields given by keyword
        in ``options`` replacing its own (``device='cuda'``, ``runner=RunnerOptions(...)``).
        The configuration is checked before the checkpoint is read.
        """
        config = replace(config or EngineConfig(), **options)
        spec = get_spec(name)
        config.resolve(spec, calibrated=bool(calibration))
        network = load(name, weights_dir, checkpoint=checkpoint,
                       allow_unverified=allow_unverified, log=log)
        return cls(spec, network, config, calibration=calibration, log=log, warn=warn,
                   label_map=label_map)

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
        """
        Give the GPU memory back while the engine is idle (a deactivated node).

        On CUDA the runner moves its network to host memory and empties PyTorch's cache; on
        the CPU nothing happens. :meth:`to_device` undoes it before the next frame.
        """
        self.runner.release()

    def to_device(self) -> None:
        """Move the runner's network back to its device after :meth:`release`."""
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
            resized = np.stack([
                image if image.shape[:2] == (height, width)
                else cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
                for image in images])
            if order != self.spec.normalization.channel_order:
                resized = resized[..., ::-1]
            # The channel flip and the move to planes as one copy of bytes, then one pass
            # that converts, scales and shifts: a quarter of the memory traffic of doing
            # each on floats.
            planes = np.ascontiguousarray(resized.transpose(0, 3, 1, 2))
            batch = torch.from_numpy(planes).to(self.device, non_blocking=True)
            return torch.addcmul(self._shift, batch, self._scale).to(self.dtype)
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
        """
        Return N x h x w uint8 labels (and float32 confidence) for a preprocessed batch.

        With a label map, the labels are the published groups' ids and the confidence their
        probability: the compiled graph's labels go through the lookup table; grouped
        confidence needs every class's probability, so it is taken from the runner's logits.
        """
        graphs, grouping = self._graphs, self._grouping
        groups = grouping[0] if grouping is not None else None
        if groups is not None and with_confidence:
            labels, confidence = grouped_labels_and_confidence(
                self.runner(batch), batch.shape[-2:], groups)
            return labels.cpu().numpy(), confidence.cpu().numpy()
        compiled = _run_graphs(graphs, batch, with_confidence=with_confidence)
        if compiled is not None:
            labels, confidence = compiled
            if groups is not None:
                labels = groups.labels(labels)
            return labels.numpy(), confidence.numpy() if with_confidence else None
        if not with_confidence:
            labels = self.runner.labels(batch)
            if groups is not None:
                labels = groups.labels(labels)
            return labels.cpu().numpy(), None
        labels, confidence = self.runner.labels_and_confidence(batch)
        return labels.cpu().numpy(), confidence.cpu().numpy()

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
