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
The engine's vocabularies, said once: precision, backend, channel order, output resolution.

The engine, the node's parameter table, the command line's choices and the launch files all
take their words from here. Each member is its own string (``Precision.FP32 == 'fp32'``),
so parameters, JSON and diagnostics keep plain strings.
"""

import enum
from typing import Optional, Type


class Choice(str, enum.Enum):
    """A string vocabulary whose members print as their values (also on Python 3.10)."""

    def __str__(self) -> str:
        """Return the value, as a parameter or a JSON file spells it."""
        return str(self.value)

    def __format__(self, spec: str) -> str:
        """Format the value, not the member name."""
        return format(str(self.value), spec)

    @classmethod
    def values(cls) -> tuple[str, ...]:
        """Return every value, in declaration order."""
        return tuple(str(member.value) for member in cls)


class Precision(Choice):
    """The arithmetic the network runs in."""

    AUTO = 'auto'    # the fastest measured safe choice for the device and backend
    FP32 = 'fp32'
    FP16 = 'fp16'    # CUDA only
    BF16 = 'bf16'
    MIXED = 'mixed'  # CPU: bf16 in the convolutions a network names as tolerant of it


class Backend(Choice):
    """What runs the network."""

    AUTO = 'auto'                    # eager PyTorch with folded batch norms, channels-last
    TORCH = 'torch'
    TORCH_COMPILE = 'torch-compile'  # inductor, weights frozen into the graph
    ONNXRUNTIME = 'onnxruntime'


class ChannelOrder(Choice):
    """The order of an image's three colour channels."""

    RGB = 'rgb'
    BGR = 'bgr'


class OutputResolution(Choice):
    """Where outputs are rendered: at the camera's resolution or the network's."""

    INPUT = 'input'
    NETWORK = 'network'


DEFAULT_DEVICE = 'auto'
DEFAULT_PRECISION = Precision.AUTO
DEFAULT_BACKEND = Backend.AUTO
DEFAULT_OUTPUT_RESOLUTION = OutputResolution.INPUT
CUDA_PREFIX = 'cuda:'


def choice_error(vocabulary: Type[Choice], name: str, value: str) -> Optional[str]:
    """Return why ``value`` is not a word of ``vocabulary``, or None if it is one."""
    if value in vocabulary.values():
        return None
    return f'{name} must be one of {", ".join(vocabulary.values())}; got {value!r}'


def device_error(value: str) -> Optional[str]:
    """Return why ``value`` is not auto, cpu, cuda or cuda:N, or None if it is one of them."""
    if value in ('auto', 'cpu', 'cuda') or (
            value.startswith(CUDA_PREFIX) and value[len(CUDA_PREFIX):].isdigit()):
        return None
    return f'device must be auto, cpu, cuda or cuda:N; got {value!r}'


def parse_size(text: str) -> tuple[int, int]:
    """Parse 'WxH' into (width, height); raise ValueError naming the text otherwise."""
    try:
        width, height = (int(part) for part in text.lower().split('x'))
    except ValueError:
        raise ValueError(f'size {text!r} is not WIDTHxHEIGHT, e.g. 1024x512') from None
    return width, height
