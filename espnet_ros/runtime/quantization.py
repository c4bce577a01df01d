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
Post-training static int8 quantization of the ONNX export, for ONNX Runtime on the CPU.

Convolutions and transposed convolutions only, weights and activations per tensor, as QDQ
pairs around each (what ONNX Runtime's x86 int8 kernels fuse), with activation ranges from
the minimum and maximum over preprocessed frames of the model's own dataset. Of the settings
tried on ESPNet CamVid (docs/performance-under-load.md), this one kept the most labels:
quantizing every operator (the batch norms left after concatenations, PReLU, additions)
or weights per channel, or clipping ranges at a percentile or by entropy, kept fewer.
Whether it is accurate enough is measured, not assumed: see the CamVid figures there.
"""

from pathlib import Path
import tempfile
from typing import Iterable, Iterator, Optional

import numpy as np

INPUT_NAME = 'image'


class _Frames:
    """ONNX Runtime's calibration reader over preprocessed N x 3 x H x W float batches."""

    def __init__(self, batches: Iterable[np.ndarray]) -> None:
        self._batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: np.ascontiguousarray(batch, np.float32)}

    def rewind(self) -> None:
        """Nothing to do: each calibration pass reads the batches once."""


QUANTIZED_OPERATORS = ('Conv', 'ConvTranspose')


def quantize_static_onnx(model: bytes, batches: Iterable[np.ndarray]) -> bytes:
    """Return ``model`` (ONNX bytes, fp32) quantized to int8, calibrated on ``batches``."""
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, quantize_static,
                                          QuantType)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix='espnet_ros_int8_') as folder:
        source, prepared, target = (Path(folder) / name for name in
                                    ('fp32.onnx', 'prepared.onnx', 'int8.onnx'))
        source.write_bytes(model)
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(target), _Frames(batches),
                        quant_format=QuantFormat.QDQ, per_channel=False,
                        op_types_to_quantize=list(QUANTIZED_OPERATORS),
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        return target.read_bytes()
