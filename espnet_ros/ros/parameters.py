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


"""ROS declarations of the parameter table, and the engine settings they describe."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional
import warnings

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

from espnet_ros.ros.parameter_table import (check_parameter, check_together, Effect,
                                            NodeParameters, PARAMETERS, ParameterSpec,
                                            typed_value)
from espnet_ros.runtime.engine import (describe_input_size, free_cached_gpu_memory, resolve_device,
                                       SegmentationEngine)
from espnet_ros.runtime.process import run_on_passing_thread
from espnet_ros.zoo.label_map import load_for_dataset
from espnet_ros.zoo.registry import get_spec

WARM_UP_FRAMES = 2
PACKAGE_DIR = Path(__file__).resolve().parents[2]


def descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    """Return the ROS descriptor of one parameter: description, choices and range."""
    constraints = f'one of: {", ".join(spec.choices)}' if spec.choices else ''
    result = ParameterDescriptor(description=spec.description,
                                 additional_constraints=constraints,
                                 read_only=spec.effect is Effect.STARTUP)
    if spec.limits is not None and isinstance(spec.default, int):
        result.integer_range = [IntegerRange(from_value=int(spec.limits[0]),
                                             to_value=int(spec.limits[1]), step=0)]
    elif spec.limits is not None:
        result.floating_point_range = [FloatingPointRange(
            from_value=float(spec.limits[0]), to_value=float(spec.limits[1]), step=0.0)]
    return result


def declare(node: Node, spec: ParameterSpec) -> Any:
    """
    Declare one parameter on ``node``; return its start-up value, typed as the table holds it.

    A string array is declared by type: rclpy would take an empty default list for a byte
    array. Left unset (an empty list in a YAML file sets nothing), it is set to empty, so
    that it reads as an empty array rather than as uninitialized.
    """
    if not isinstance(spec.default, tuple):
        return node.declare_parameter(spec.name, spec.default, descriptor(spec)).value
    value = node.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY,
                                   descriptor(spec)).value
    if value is None:
        node.set_parameters([Parameter(spec.name, Parameter.Type.STRING_ARRAY,
                                       list(spec.default))])
        value = spec.default
    return typed_value(spec.name, list(value))


class ParameterStartupError(ValueError):
    """A start-up parameter value of the wrong type, out of range or not one of the choices."""


def declare_all(node: Node) -> NodeParameters:
    """Declare every parameter of the table on ``node``; return their start-up values."""
    values = {}
    for spec in PARAMETERS:
        try:
            values[spec.name] = declare(node, spec)
        except (InvalidParameterTypeException, InvalidParameterValueException) as error:
            hint = ' (write floats with a decimal point, e.g. 5.0)' if isinstance(
                error, InvalidParameterTypeException) and isinstance(spec.default, float) else ''
            raise ParameterStartupError(f'parameter {spec.name}: {error}{hint}') from None
        # ROS checks types and ranges only; choices, devices and model names are ours.
        reason = check_parameter(spec.name, values[spec.name])
        if reason:
            raise ParameterStartupError(f'parameter {spec.name}: {reason}')
    parameters = NodeParameters(**values)
    reason = check_together(parameters)
    if reason:
        raise ParameterStartupError(reason)
    return parameters


@dataclass(frozen=True)
class EngineSettings:
    """The parameters that need a new engine when they change."""

    model: str
    weights: Optional[str]
    allow_unverified: bool
    input_size: Optional[tuple[int, int]]
    device: str
    precision: str
    backend: str
    compile_mode: str
    label_map: Optional[str] = None

    @classmethod
    def from_parameters(cls, parameters: NodeParameters) -> 'EngineSettings':
        """Read the settings from the node's parameters (a 0 side follows the other)."""
        width, height = parameters.input_width, parameters.input_height
        return cls(model=parameters.model, weights=parameters.weights or None,
                   allow_unverified=parameters.allow_unverified_weights,
                   input_size=(width, height) if width or height else None,
                   device=parameters.device, precision=parameters.precision,
                   backend=parameters.backend, compile_mode=parameters.compile_mode,
                   label_map=parameters.label_map or None)

    def build(self, logger: Any, abandon: Callable[[], bool] = lambda: False
              ) -> SegmentationEngine:
        """
        Load, move and warm up the engine; log where it runs.

        The caller stops waiting (:class:`~espnet_ros.runtime.process.Abandoned`) once
        ``abandon()`` is true, so that a slow build never holds a node asked to stop.
        """
        try:
            return run_on_passing_thread(self._load_and_warm_up, logger, abandon=abandon)
        except Exception:
            # What a half-built engine cached on the GPU (say, before an out-of-memory error
            # at a new size) goes back to the driver, leaving room to the engine still serving.
            free_cached_gpu_memory()
            raise

    def _load_and_warm_up(self, logger: Any) -> SegmentationEngine:
        if self.device == 'auto' and resolve_device('auto').type == 'cpu':
            # Once per process: a reload on the same machine has nothing new to say.
            logger.warning('device auto: CUDA is not available, running on the CPU', once=True)
        # Read before the network: a bad file is refused at once, naming file and group.
        label_map = (load_for_dataset(Path(self.label_map), get_spec(self.model).dataset)
                     if self.label_map else None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('default')
            engine = SegmentationEngine.from_pretrained(
                self.model, checkpoint=self.weights, allow_unverified=self.allow_unverified,
                input_size=self.input_size, device=self.device, precision=self.precision,
                backend=self.backend, compile_mode=self.compile_mode, log=logger.info,
                warn=logger.warning, label_map=label_map)
        for warning in caught:
            # Ours (an unverified checkpoint loaded anyway) belong in the ROS log and /rosout.
            if Path(warning.filename).is_relative_to(PACKAGE_DIR):
                logger.warning(str(warning.message))
            else:
                warnings.showwarning(warning.message, warning.category, warning.filename,
                                     warning.lineno)
        engine.warm_up(WARM_UP_FRAMES)
        if label_map is not None:
            logger.info(f'label map {label_map.source}: publishing '
                        f'{", ".join(label_map.names)} (ignore value {label_map.ignore_value})')
        logger.info(f'model {self.model} at {describe_input_size(engine.spec, self.input_size)}'
                    f' on {engine.device} ({engine.precision}, {engine.backend}; compile_mode '
                    f'{self.compile_mode})')
        return engine
