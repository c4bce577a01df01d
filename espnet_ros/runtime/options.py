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
The engine's vocabularies and settings, said once: precision, backend, threads and more.

The engine, the node's parameter table, the command line's choices and the launch files all
take their words from here. Each member is its own string (``Precision.FP32 == 'fp32'``),
so parameters, JSON and diagnostics keep plain strings.
"""

import enum
import os
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
    INT8 = 'int8'    # CPU, ONNX Runtime: static post-training quantization, calibrated


class Backend(Choice):
    """What runs the network."""

    AUTO = 'auto'                    # eager PyTorch (folded, channels-last); see CompileMode
    TORCH = 'torch'
    # = torch with compile_mode jit: the older spelling, still accepted, and the name the
    # engine gives that runner (see espnet_ros.runtime.config).
    TORCH_COMPILE = 'torch-compile'
    ONNXRUNTIME = 'onnxruntime'
    # ESPNet and ESPNet-C as a plan of oneDNN primitives (x86-64 CPU; onednn_plan.py).
    ONEDNN = 'onednn'


class CompileMode(Choice):
    """
    How PyTorch's compiler is used: the one name for compiling.

    cached and background apply to backend auto on the CPU, which moves from eager to a
    compiled graph kept on disk; jit compiles in the process (any device).
    """

    EAGER = 'eager'            # no compiled graph ('off' would read as a YAML boolean)
    CACHED = 'cached'          # switch to a compiled graph if the cache holds one; never build
    BACKGROUND = 'background'  # also build a missing one in a child process, then switch
    JIT = 'jit'                # inductor in the process at the first frame, at every start


class ChannelOrder(Choice):
    """The order of an image's three colour channels."""

    RGB = 'rgb'
    BGR = 'bgr'


class Output(Choice):
    """What the node publishes and the bag tool records, each under segmentation/."""

    LABELS = 'labels'            # mono8 class ids, the one output always computed
    COLOR = 'color'              # rgb8 class colours
    OVERLAY = 'overlay'          # rgb8 colours blended over the camera image
    CONFIDENCE = 'confidence'    # the winning class probability (32FC1 or mono8)
    CAMERA_INFO = 'camera_info'  # the camera's CameraInfo for the labels' grid
    POINTS = 'points'            # the labelled organized cloud (with a depth input)
    CLASSES = 'classes'          # latched: the class table, JSON in std_msgs/String
    LABEL_INFO = 'label_info'    # latched: vision_msgs/LabelInfo


# The outputs rendered as images from a frame's arrays, in the order they are written.
IMAGE_OUTPUTS = (Output.LABELS, Output.COLOR, Output.OVERLAY, Output.CONFIDENCE)


class OutputResolution(Choice):
    """Where outputs are rendered: at the camera's resolution or the network's."""

    INPUT = 'input'
    NETWORK = 'network'


class Unlisted(Choice):
    """What a label map does with the model classes that are in none of its groups."""

    IGNORE = 'ignore'  # published as the map's ignore value
    KEEP = 'keep'      # published as classes of their own, after the groups


DEFAULT_DEVICE = 'auto'
DEFAULT_PRECISION = Precision.AUTO
DEFAULT_BACKEND = Backend.AUTO
DEFAULT_OUTPUT_RESOLUTION = OutputResolution.INPUT
# Most seconds between a colour frame's stamp and its depth partner's (node and bag tool).
DEFAULT_DEPTH_SYNC_SLOP_S = 0.02
# The node serves for hours: worth building the graph once. One-shot commands only use it.
NODE_COMPILE_MODE = CompileMode.BACKGROUND
CUDA_PREFIX = 'cuda:'
# 0: choose from the cores this process may run on (see auto_threads).
DEFAULT_THREADS = 0
MAX_THREADS = 256


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


def usable_cores() -> int:
    """Return how many CPU cores this process may run on (its affinity mask, else all)."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def auto_threads(cores: Optional[int] = None) -> int:
    """
    Return the inference thread count for ``threads: 0``: half the usable cores, at least 1.

    A robot's computer is shared: each parallel operation of the network ends when its
    slowest thread does, so one team thread on a core taken by another process holds the
    whole team for a scheduler slice, hundreds of times a frame. With half the cores, the
    scheduler has free ones to move a team thread to (docs/performance-under-load.md).
    """
    return max(1, (usable_cores() if cores is None else cores) // 2)


def threads_error(value: int) -> Optional[str]:
    """Return why ``value`` is not a thread count (0 = auto), or None if it is one."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_THREADS:
        return f'threads must be an integer in [0, {MAX_THREADS}] (0 = auto); got {value!r}'
    return None


def resolve_threads(threads: int = DEFAULT_THREADS) -> int:
    """Return the thread count to use for ``threads`` (0 = :func:`auto_threads`)."""
    reason = threads_error(threads)
    if reason:
        raise ValueError(reason)
    return threads or auto_threads()
