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
How a network is run: PyTorch (eager or compiled, CUDA graphs) or ONNX Runtime.

Each runner maps an N x 3 x H x W float batch on the engine's device to logits, or to
uint8 labels. The fast paths, each measured against the eager fp32 baseline by
``espnet-ros bench`` (figures and their history in docs/performance.md):

* batch norms folded into the convolutions before them: one pass over memory less per unit;
* channels-last memory: oneDNN and cuDNN convolve without reordering every input and
  output, and the arg-max over classes reads it contiguously;
* ``torch.compile`` with frozen weights fuses the element-wise tails and the arg-max and
  calls oneDNN with its weights packed once; frozen graphs miss inductor's on-disk cache,
  so compile_mode jit (the older spelling: backend torch-compile) compiles at every start
  (compile_mode cached or background reaches the same graph through
  :mod:`espnet_ros.runtime.graph_cache` instead);
* CUDA graphs on NVIDIA GPUs: one launch per frame instead of hundreds of small kernels;
* ONNX Runtime on the CPU, its worker threads told not to spin, since spinning threads take
  the cores from everything else in the process;
* ESPNet and ESPNet-C as a plan of oneDNN primitives created once, with each ESP module's
  element-wise work in one pass (:mod:`espnet_ros.runtime.onednn_plan`).

``auto`` is eager PyTorch with the fast paths above, the fastest path that starts at once;
with a ``compile_mode`` the engine then moves to the compiled graph kept on disk
(:mod:`espnet_ros.runtime.graph_switch`).
"""

import copy
import io
from typing import Callable, Optional, Sequence, Union
import warnings

import numpy as np
import torch
from torch import nn

from espnet_ros.compat import with_frozen_weights
from espnet_ros.networks.subnormals import flush_subnormals
from espnet_ros.runtime import head
from espnet_ros.runtime.config import (onnxruntime_available,  # noqa: F401 - its old home
                                       ResolvedConfig)
from espnet_ros.runtime.folding import fold_batch_norms, folded_fp32_copy
from espnet_ros.runtime.mixed_precision import apply_mixed_precision
from espnet_ros.runtime.onednn_plan import PlanNetwork
from espnet_ros.runtime.options import Backend, CompileMode
from espnet_ros.runtime.phase_labels import load_kernel
from espnet_ros.runtime.quantization import quantize_static_onnx

ONNX_OPSET = 17


def export_onnx(network: nn.Module, input_size: tuple[int, int], *, batch: int = 1,
                target: Optional[io.IOBase] = None) -> bytes:
    """
    Export ``network`` to ONNX for W x H inputs, dynamic batch; return the bytes.

    A folded fp32 CPU copy is exported (opset 17, TorchScript exporter), so that ONNX
    Runtime and TensorRT get plain Conv nodes. Sizes computed from the input shape become
    constants, which is why H and W are fixed; the tracer's warnings about that are expected.
    (The newer torch.export-based exporter needs onnxscript, which this package does not
    depend on; the TorchScript one warns that it is deprecated.)
    """
    width, height = input_size
    model = folded_fp32_copy(network)
    example = torch.zeros(batch, 3, height, width)
    buffer = target if target is not None else io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(model, example, buffer, opset_version=ONNX_OPSET, dynamo=False,
                          input_names=['image'], output_names=['logits'],
                          dynamic_axes={'image': {0: 'batch'}, 'logits': {0: 'batch'}})
    return buffer.getvalue() if isinstance(buffer, io.BytesIO) else b''


def onnx_session(model: Union[bytes, str], *, threads: Optional[int] = None):
    """Return an ONNX Runtime CPU session for a serialised model or an .onnx path."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    # Idle workers spin by default, taking the cores from the rest of the frame (decoding,
    # resizing, rendering) and from PyTorch in the same process.
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    options.add_session_config_entry('session.inter_op.allow_spinning', '0')
    return onnxruntime.InferenceSession(model, options, providers=['CPUExecutionProvider'])


class Runner:
    """
    Runs a network: an N x 3 x H x W batch on the engine's device to logits or labels.

    A runner whose network gives labels without full-size logits (a fused head, a compiled
    labels graph) sets ``_labels`` and ``_labels_and_confidence``; the others take the arg-max
    of their logits.
    """

    # Why the labels come the slower way although the fused head was asked for, else None.
    head_note: Optional[str] = None
    _labels: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    _labels_and_confidence: Optional[
        Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Return N x C x h x w logits (h x w: the network's output size)."""
        raise NotImplementedError

    def _input(self, batch: torch.Tensor) -> torch.Tensor:
        """Return the batch as the runner's labels functions take it."""
        return batch

    def labels(self, batch: torch.Tensor) -> torch.Tensor:
        """Return N x H x W uint8 labels at the batch's resolution."""
        with torch.inference_mode():
            if self._labels is not None:
                return self._labels(self._input(batch))
            return head.labels(self(batch), batch.shape[-2:])

    def labels_and_confidence(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return N x H x W uint8 labels and float32 confidence at the batch's resolution."""
        with torch.inference_mode():
            if self._labels_and_confidence is not None:
                return self._labels_and_confidence(self._input(batch))
            return head.labels_and_confidence(self(batch), batch.shape[-2:])

    def _use_fused_head(self, network: nn.Module) -> None:
        """Take the labels from the fused C head where ``network`` ends in ESPNet's last layer."""
        if head.upsampling_classifier(network) is None:
            return
        self.head_note = load_kernel()
        if self.head_note is None:
            self._labels = head.Labels(network)
            self._labels_and_confidence = head.LabelsAndConfidence(network)

    def release(self) -> None:
        """Give the device memory back; host-only runners have none, and do nothing."""

    def to_device(self) -> None:
        """Take the device memory again after :meth:`release`; host-only runners do nothing."""


class TorchRunner(Runner):
    """PyTorch inference: folded batch norms, channels-last, optional compile/CUDA graph."""

    def __init__(self, network: nn.Module, *, device: torch.device, dtype: torch.dtype,
                 compile_network: bool = False, cuda_graph: bool = False,
                 channels_last: bool = True, fold: bool = True, mixed: bool = False,
                 fused_head: bool = True, keep_subnormals: bool = False) -> None:
        """
        Prepare a private copy of ``network`` on ``device`` in ``dtype``.

        ``mixed``: bf16 in the network's bf16-tolerant convolutions, ``dtype`` elsewhere.
        ``fused_head``: eager labels on the CPU from the fused C kernel where the network ends
        in ESPNet's last layer and the kernel builds here (else the logits' arg-max).
        ``keep_subnormals``: leave subnormal weights as they are (the benchmark's anchor row of
        the checkpoint as loaded); otherwise any the cast makes are set to zero.
        """
        network = copy.deepcopy(network).eval()
        if fold:
            fold_batch_norms(network)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.network = network.to(device, dtype, memory_format=self.memory_format)
        if not keep_subnormals:
            # fp16's smallest normal is 6.1e-5: the cast itself can make subnormal weights.
            flush_subnormals(self.network)
        if mixed:
            apply_mixed_precision(self.network)
        self.device = device
        self.use_cuda_graph = cuda_graph and device.type == 'cuda'
        self.forward: Callable[[torch.Tensor], torch.Tensor] = self.network
        # Inductor picks its own layouts; an NCHW image lets it vectorise the input
        # reinforcement's pooling along rows.
        self.input_format = torch.contiguous_format if compile_network else self.memory_format
        if compile_network:
            # Frozen weights let inductor constant-fold them; on the CPU a C++ wrapper calls
            # the kernels without Python in between, and autotuning times its own GEMM
            # templates against oneDNN for the 1x1 convolutions (docs/performance.md). Each
            # graph is compiled on its first call.
            cpu = device.type == 'cpu'
            options = {'freezing': True, 'cpp_wrapper': cpu, 'max_autotune': cpu}
            self.forward = with_frozen_weights(
                torch.compile(self.network, dynamic=False, options=options))
            if not self.use_cuda_graph:
                # Labels in the same graph: the arg-max fuses into the last kernels and the
                # full-size logits are never written out.
                self._labels = with_frozen_weights(torch.compile(
                    head.Labels(self.network), dynamic=False, options=options))
        # Eager frames skip writing every class's score at full size, as the compiled graphs
        # do (docs/performance.md); building the kernel is tried once per process.
        if fused_head and device.type == 'cpu' and not compile_network:
            self._use_fused_head(self.network)
        self._graph: Optional[torch.cuda.CUDAGraph] = None
        self._static_input: Optional[torch.Tensor] = None
        self._static_output: Optional[torch.Tensor] = None

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Return logits for a batch on the runner's device and dtype."""
        batch = batch.contiguous(memory_format=self.input_format)
        if not self.use_cuda_graph:
            return self.forward(batch)
        if self._static_input is None or self._static_input.shape != batch.shape:
            self._capture(batch)
        self._static_input.copy_(batch)
        self._graph.replay()
        return self._static_output.clone()

    def _input(self, batch: torch.Tensor) -> torch.Tensor:
        """Return the batch in the memory format the network (or its graph) reads."""
        return batch.contiguous(memory_format=self.input_format)

    def _capture(self, batch: torch.Tensor) -> None:
        """Record one forward pass for this batch shape as a CUDA graph."""
        self._static_input = batch.clone()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):  # cuDNN picks its algorithms outside the capture
                self.forward(self._static_input)
        torch.cuda.current_stream(self.device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._static_output = self.forward(self._static_input)

    def release(self) -> None:
        """On CUDA: drop the CUDA graph, move the network to host memory, empty the cache."""
        if self.device.type == 'cuda':
            self._graph = self._static_input = self._static_output = None
            self.network.to('cpu')
            torch.cuda.empty_cache()

    def to_device(self) -> None:
        """Move the network back to its device after :meth:`release` (recaptured lazily)."""
        self.network.to(self.device)


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime on the CPU, from an in-memory export of the network."""

    def __init__(self, network: nn.Module, *, input_size: tuple[int, int],
                 threads: Optional[int] = None,
                 int8_calibration: Optional[Sequence[np.ndarray]] = None) -> None:
        """
        Export ``network`` for W x H inputs and open a session on it.

        ``int8_calibration``: preprocessed batches; the export is then quantized to int8
        (:mod:`espnet_ros.runtime.quantization`) with activation ranges taken from them.
        """
        model = export_onnx(network, input_size)
        if int8_calibration is not None:
            model = quantize_static_onnx(model, int8_calibration)
        self.session = onnx_session(model, threads=threads)
        self.device = torch.device('cpu')

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Return channels-last logits for a CPU float32 batch, like :class:`TorchRunner`."""
        logits, = self.session.run(None, {'image': batch.float().contiguous().numpy()})
        # The arg-max over classes that follows reads channels-last memory contiguously;
        # on NCHW it took longer than this copy and itself together.
        return torch.from_numpy(logits).contiguous(memory_format=torch.channels_last)


class OneDNNRunner(Runner):
    """ESPNet or ESPNet-C as a oneDNN plan on the CPU, labels from the fused head."""

    def __init__(self, network: nn.Module, *, mixed: bool, fused_head: bool = True) -> None:
        """Fold a private copy of ``network``; its plans are built at each new input shape."""
        self.network = PlanNetwork(network, mixed=mixed)
        self.device = torch.device('cpu')
        if fused_head:
            self._use_fused_head(self.network)

    @torch.inference_mode()
    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Return channels-last logits for a CPU float32 batch, like :class:`TorchRunner`."""
        return self.network(self._input(batch))

    def _input(self, batch: torch.Tensor) -> torch.Tensor:
        """Return the batch in float32, which the plan reads."""
        return batch.float()


def build_runner(network: nn.Module, settings: ResolvedConfig, *,
                 int8_calibration: Optional[Sequence[np.ndarray]] = None) -> Runner:
    """
    Return the runner that ``settings`` (checked by :mod:`espnet_ros.runtime.config`) name.

    ``network`` is left as it is: the runners work on copies of it. ``int8_calibration``:
    preprocessed batches, for precision int8. ``settings.config.runner.keep_subnormals``: the
    benchmark's as-loaded anchor row.
    """
    if settings.backend == Backend.ONNXRUNTIME:
        return OnnxRuntimeRunner(network, input_size=settings.input_size,
                                 int8_calibration=int8_calibration)
    options = settings.config.runner
    if settings.backend == Backend.ONEDNN:
        return OneDNNRunner(network, mixed=settings.mixed, fused_head=options.fused_head)
    device = settings.device
    return TorchRunner(network, device=device, dtype=settings.dtype,
                       compile_network=settings.compile_mode == CompileMode.JIT,
                       cuda_graph=(device.type == 'cuda' if options.cuda_graph is None
                                   else options.cuda_graph),
                       channels_last=options.channels_last, fold=options.fold,
                       mixed=settings.mixed, fused_head=options.fused_head,
                       keep_subnormals=options.keep_subnormals)
