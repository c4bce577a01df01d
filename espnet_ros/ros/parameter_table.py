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
The segmenter's parameters, declared once: name, default, meaning, limits, effect.

The node turns this table into ROS parameter descriptors; the README's parameter table and
``config/segment.yaml`` are checked against it by the tests. No ROS import here.
"""

from dataclasses import dataclass, field, fields, make_dataclass, replace
from typing import Any, Iterable, Mapping, Optional

from espnet_ros.imaging.codec import CONFIDENCE_ENCODINGS
from espnet_ros.imaging.outputs import points_groups_error
from espnet_ros.runtime.options import (Backend, Choice, CompileMode, DEFAULT_BACKEND,
                                        DEFAULT_DEPTH_SYNC_SLOP_S, DEFAULT_DEVICE,
                                        DEFAULT_OUTPUT_RESOLUTION,
                                        DEFAULT_PRECISION, DEFAULT_THREADS, device_error,
                                        MAX_THREADS, NODE_COMPILE_MODE, OutputResolution,
                                        Precision)
from espnet_ros.streaming.camera_names import cameras_error
from espnet_ros.streaming.scheduler import BatchSettings, DEFAULT_BATCH_WAIT_S
from espnet_ros.zoo import DEFAULT_MODEL


class Effect(Choice):
    """What changing a parameter at run time does."""

    LIVE = 'live'                # applied to the next frame
    RELOAD = 'reload'            # a new engine is built; the old one serves until it is ready
    RESUBSCRIBE = 'resubscribe'  # the camera subscription is recreated
    STARTUP = 'startup'          # read once at start-up


# Short names for the table's rows.
LIVE, RELOAD, RESUBSCRIBE, STARTUP = Effect.LIVE, Effect.RELOAD, Effect.RESUBSCRIBE, Effect.STARTUP


class Reliability(Choice):
    """QoS reliability of the camera subscription."""

    AUTO = 'auto'                # whatever matches every publisher of the camera topic
    BEST_EFFORT = 'best_effort'  # sensor data: matches every publisher
    RELIABLE = 'reliable'        # hears reliable publishers only


MAX_NETWORK_SIDE = 4096
MIN_RATE_HZ = 0.1  # a frame every 10 s; a max_rate below that is a typo, not a stream
DEFAULT_MAX_INPUT_PIXELS = 4096 * 4096
MAX_DEPTH_LIMIT_M = 1000.0
MAX_SYNC_SLOP_S = 10.0
MAX_POINTS_STRIDE = 64
MAX_BATCH = 64
MAX_BATCH_WAIT_S = 1.0


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: its default fixes its type."""

    name: str
    default: Any
    description: str
    effect: Effect
    choices: Optional[tuple[str, ...]] = None
    limits: Optional[tuple[float, float]] = None

    def check(self, value: Any) -> Optional[str]:
        """Return why ``value`` is refused, or None if it is acceptable."""
        if isinstance(self.default, tuple):  # a string array: ROS and YAML give lists
            if not isinstance(value, (list, tuple)) or not all(
                    isinstance(item, str) for item in value):
                return f'{self.name} must be a list of strings, got {value!r}'
            return None
        if type(value) is not type(self.default):
            return (f'{self.name} must be a {type(self.default).__name__}, got '
                    f'{type(value).__name__} {value!r}')
        if self.choices is not None and value not in self.choices:
            return f'{self.name} must be one of {", ".join(self.choices)}; got {value!r}'
        if self.limits is not None and not self.limits[0] <= value <= self.limits[1]:
            return f'{self.name} must be in [{self.limits[0]}, {self.limits[1]}]; got {value}'
        return None


def _model_error(value: str) -> Optional[str]:
    from espnet_ros.zoo.registry import registry  # PyTorch: only when a model is named
    if value in registry():
        return None
    return f'unknown model {value!r}; known models: {", ".join(registry())}'


PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec('model', DEFAULT_MODEL,
                  'Registry name of the network (espnet-ros models lists them).', RELOAD),
    ParameterSpec('weights', '', 'Explicit checkpoint file; empty searches the model folders.',
                  RELOAD),
    ParameterSpec('allow_unverified_weights', False,
                  "Accept an explicit checkpoint whose sha256 is not the manifest's "
                  '(still read weights-only).', RELOAD),
    ParameterSpec('input_width', 0, "Network input width in pixels, a multiple of the network's "
                  'stride (8 for ESPNet, 32 for ESPNetv2); 0 = from input_height at the training '
                  'aspect ratio (both 0: the training size).',
                  RELOAD, limits=(0, MAX_NETWORK_SIDE)),
    ParameterSpec('input_height', 0, "Network input height in pixels, a multiple of the network's "
                  'stride; 0 = from input_width at the training aspect ratio (both 0: the '
                  'training size).', RELOAD, limits=(0, MAX_NETWORK_SIDE)),
    ParameterSpec('device', DEFAULT_DEVICE,
                  'auto (CUDA if present, else CPU), cpu, cuda or cuda:N.', RELOAD),
    ParameterSpec('precision', DEFAULT_PRECISION.value,
                  'auto (fastest measured safe choice), fp32, fp16 (CUDA), bf16 or mixed (CPU: '
                  'bf16 in the ESP branches).', RELOAD, choices=Precision.values()),
    ParameterSpec('backend', DEFAULT_BACKEND.value,
                  'auto (eager PyTorch with folded batch norms and channels-last, then on the '
                  'CPU the compiled graph, see compile_mode), torch, torch-compile (older '
                  'spelling of torch with compile_mode jit), onnxruntime, or onednn (CPU: '
                  'ESPNet and ESPNet-C as a plan of oneDNN primitives).', RELOAD,
                  choices=Backend.values()),
    ParameterSpec('compile_mode', NODE_COMPILE_MODE.value,
                  'For backend auto on the CPU: background (serve eager at once, switch to the '
                  'compiled graph from the cache, compiling it aside the first time), cached '
                  '(switch only to a cached graph), eager (no compiled graph), or jit (torch '
                  'and auto: compiled in the process at every start).', RELOAD,
                  choices=CompileMode.values()),
    ParameterSpec('threads', DEFAULT_THREADS,
                  'CPU threads for inference; 0 = half the cores the node may use (at least 1), '
                  'leaving the others to the rest of the robot.', STARTUP,
                  limits=(0, MAX_THREADS)),
    ParameterSpec('output_resolution', DEFAULT_OUTPUT_RESOLUTION.value,
                  'Outputs at the camera resolution (input) or the network resolution '
                  '(network).', LIVE, choices=OutputResolution.values()),
    ParameterSpec('max_rate', 0.0, 'Most frames per second to process; 0 = as many as the '
                  f'network keeps up with, else at least {MIN_RATE_HZ}. A change applies to the '
                  'next frame.', LIVE, limits=(0.0, 1000.0)),
    ParameterSpec('overlay_alpha', 0.5, 'Opacity of the class colours in the overlay.', LIVE,
                  limits=(0.0, 1.0)),
    ParameterSpec('publish_color', True, 'Publish segmentation/color.', LIVE),
    ParameterSpec('publish_overlay', True, 'Publish segmentation/overlay.', LIVE),
    ParameterSpec('publish_confidence', False,
                  'Publish segmentation/confidence (32FC1, the winning class probability).',
                  LIVE),
    ParameterSpec('confidence_encoding', CONFIDENCE_ENCODINGS[0],
                  'Encoding of segmentation/confidence: 32FC1 (the probability) or mono8 '
                  '(0-255, as the Nav2 semantic segmentation layer reads it).', LIVE,
                  choices=CONFIDENCE_ENCODINGS),
    ParameterSpec('publish_points', False,
                  'Publish segmentation/points, the labelled organized cloud; subscribes '
                  'depth/image and depth/camera_info.', RESUBSCRIBE),
    ParameterSpec('depth_sync_slop', DEFAULT_DEPTH_SYNC_SLOP_S,
                  'Most seconds between a colour frame and the depth frame paired with it '
                  '(nearest stamp); 0 pairs equal stamps only.', LIVE,
                  limits=(0.0, MAX_SYNC_SLOP_S)),
    ParameterSpec('depth_sync_wait', 0.25,
                  "Most seconds a colour frame's cloud waits, once its labels are out, for a "
                  'depth frame within depth_sync_slop that comes after them (a few frame '
                  'periods); the labels never wait.', LIVE, limits=(0.0, MAX_SYNC_SLOP_S)),
    ParameterSpec('min_depth', 0.0, 'Nearer depths (metres) give NaN points.', LIVE,
                  limits=(0.0, MAX_DEPTH_LIMIT_M)),
    ParameterSpec('max_depth', 10.0, 'Farther depths (metres) give NaN points; above '
                  'min_depth.', LIVE, limits=(0.0, MAX_DEPTH_LIMIT_M)),
    ParameterSpec('points_stride', 1, 'Keep every n-th row and column of the cloud (still '
                  'organized); 1 keeps it pixel-aligned with the labels.', LIVE,
                  limits=(1, MAX_POINTS_STRIDE)),
    ParameterSpec('max_input_pixels', DEFAULT_MAX_INPUT_PIXELS,
                  'Frames (colour and depth) with more pixels are dropped as malformed.', LIVE,
                  limits=(1, 1 << 30)),
    ParameterSpec('input_transport', 'raw', 'raw (sensor_msgs/Image on image) or compressed '
                  '(sensor_msgs/CompressedImage on image/compressed).', RESUBSCRIBE,
                  choices=('raw', 'compressed')),
    ParameterSpec('reliability', Reliability.AUTO.value,
                  'QoS reliability of the camera subscription: auto (reliable where every '
                  'camera publisher offers reliable, else best effort; looked at again as '
                  'publishers come), best_effort or reliable.', RESUBSCRIBE,
                  choices=Reliability.values()),
    ParameterSpec('autostart', True, 'Configure and activate the lifecycle node at start-up.',
                  STARTUP),
    ParameterSpec('cameras', (), 'Names of several cameras served by one model (string array):'
                  ' camera c subscribes c/image, c/camera_info (and c/depth/...) and publishes '
                  'c/segmentation/...; empty = one camera on image, as without it.', RESUBSCRIBE),
    ParameterSpec('max_batch', 0, 'With cameras: most frames run through the network as one '
                  'batch; 0 = the number of cameras.', LIVE, limits=(0, MAX_BATCH)),
    ParameterSpec('batch_wait', DEFAULT_BATCH_WAIT_S,
                  'With cameras: most seconds a batch waits for a camera whose next frame is '
                  'due; 0 = never wait.', LIVE, limits=(0.0, MAX_BATCH_WAIT_S)),
    ParameterSpec('label_map', '', "YAML file of groups of the model's classes to publish "
                  'instead of them (labels, colours, confidence, clouds, label_info; see '
                  "config/cityscapes_groups.yaml); empty = the model's own classes. A bad file "
                  'is refused with the reason and the last good map kept.', RELOAD),
    ParameterSpec('points_groups', (), 'Class or group names: each gets one more dense cloud, '
                  'segmentation/points/<name>, of its valid points (needs publish_points).',
                  LIVE),
)

BY_NAME = {spec.name: spec for spec in PARAMETERS}


def _with_changes(self: Any, changes: Mapping[str, Any]) -> Any:
    """Return a copy with ``changes`` (parameter name: value) applied."""
    return replace(self, **changes)


def _as_dict(self: Any) -> dict[str, Any]:
    """Return the values by parameter name, in the table's order."""
    return {item.name: getattr(self, item.name) for item in fields(self)}


# The node's parameters as one frozen value, generated from the table: a field per row,
# typed and defaulted by it (``parameters.publish_points``); a change makes a new value.
NodeParameters = make_dataclass(
    'NodeParameters', [(spec.name, type(spec.default), field(default=spec.default))
                       for spec in PARAMETERS],
    frozen=True, namespace={'with_changes': _with_changes, 'as_dict': _as_dict,
                            '__doc__': "The segmenter node's parameter values, frozen."})


def effects_of(names: Iterable[str]) -> set[Effect]:
    """Return what changing the parameters ``names`` does."""
    return {BY_NAME[name].effect for name in names}


def _max_rate_error(value: float) -> Optional[str]:
    """Refuse a rate so low that the next frame would be hours away."""
    if 0.0 < value < MIN_RATE_HZ:
        return (f'max_rate must be 0 (as many frames as the network keeps up with) or at '
                f'least {MIN_RATE_HZ} Hz; got {value}')
    return None


_EXTRA_CHECKS = {'device': device_error, 'model': _model_error, 'max_rate': _max_rate_error,
                 'cameras': cameras_error, 'points_groups': points_groups_error}


def typed_value(name: str, value: Any) -> Any:
    """Return ``value`` as the table's row ``name`` holds it (a string array as a tuple)."""
    spec = BY_NAME.get(name)
    if spec is not None and isinstance(spec.default, tuple):
        # A string array declared without a value ([] in a parameters file) reads as None.
        if value is None:
            return spec.default
        if isinstance(value, list):
            return tuple(value)
    return value


def check_parameter(name: str, value: Any) -> Optional[str]:
    """Return why ``name := value`` is refused, or None."""
    spec = BY_NAME.get(name)
    if spec is None:
        return f'{name} is not a parameter of this node'
    return spec.check(value) or (_EXTRA_CHECKS[name](value) if name in _EXTRA_CHECKS else None)


def check_together(parameters: NodeParameters) -> Optional[str]:
    """Return why a whole set of values is refused although each is valid, or None."""
    if parameters.min_depth >= parameters.max_depth:
        return (f'min_depth ({parameters.min_depth}) must be below max_depth '
                f'({parameters.max_depth})')
    return None


def graph_batch(parameters: NodeParameters) -> int:
    """Return the batch the compiled graph is built for: a frame of each camera, at most."""
    cameras = len(parameters.cameras)
    return BatchSettings(max_batch=parameters.max_batch).limit(cameras) if cameras else 1
