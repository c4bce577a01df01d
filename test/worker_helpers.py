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


"""What the ROS-free worker tests share: a recording output sink and a small untrained engine."""

from dataclasses import dataclass, field
from typing import Any

from espnet_ros.imaging.pipeline import FrameOutputs
from espnet_ros.runtime.config import EngineConfig
from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.runtime.options import Output
from espnet_ros.zoo.registry import get_spec

SIZE = (64, 32)  # network input, width x height: small, the weights need not be trained


def small_engine() -> SegmentationEngine:
    """Return ESPNet p=2 q=3 with untrained weights at SIZE on the CPU."""
    spec = get_spec('espnet_p2q3_cityscapes')
    return SegmentationEngine(spec, spec.build(), EngineConfig(input_size=SIZE))


@dataclass
class RecordingSink:
    """An OutputSink that keeps what it is given; ``shut`` plays ROS having shut down."""

    wanted: set = field(default_factory=lambda: {Output.LABELS})
    published: list = field(default_factory=list)
    shut: bool = False

    def wants(self, output: str) -> bool:
        return output in self.wanted

    def publish(self, header: Any, outputs: FrameOutputs, camera_size: tuple[int, int]) -> None:
        self.published.append((header, outputs, camera_size))

    def closed(self) -> bool:
        return self.shut
