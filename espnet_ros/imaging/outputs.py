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
The outputs' names and their packing for sensor_msgs/Image, shared by the node and the bag tool.

Light on purpose (no PyTorch): the image player and the message helpers import it.
"""

from typing import TYPE_CHECKING

from espnet_ros.imaging.codec import (CONFIDENCE_ENCODINGS, encode_confidence, encode_mono8,
                                      encode_rgb8, EncodedImage)
from espnet_ros.runtime.options import Output

if TYPE_CHECKING:  # the pipeline imports the engine, and so PyTorch
    from espnet_ros.imaging.pipeline import FrameOutputs

# Where each output goes, relative to the node's (the camera's) namespace: the node
# publishes these and the offline bag command records them. Per frame:
OUTPUT_TOPICS = {output: f'segmentation/{output}' for output in (
    Output.LABELS, Output.COLOR, Output.OVERLAY, Output.CONFIDENCE, Output.CAMERA_INFO,
    Output.POINTS)}
# Latched, once per model: the class table (JSON) and vision_msgs/LabelInfo.
CLASSES_TOPIC = f'segmentation/{Output.CLASSES}'
LABEL_INFO_TOPIC = f'segmentation/{Output.LABEL_INFO}'


def encode_outputs(outputs: 'FrameOutputs', *, labels: bool = True,
                   confidence_encoding: str = CONFIDENCE_ENCODINGS[0]
                   ) -> dict[Output, EncodedImage]:
    """Return a frame's outputs packed for sensor_msgs/Image, by output (labels if asked)."""
    encoded = {Output.LABELS: encode_mono8(outputs.labels) if labels else None,
               Output.COLOR: outputs.color is not None and encode_rgb8(outputs.color),
               Output.OVERLAY: outputs.overlay is not None and encode_rgb8(outputs.overlay),
               Output.CONFIDENCE: outputs.confidence is not None and encode_confidence(
                   outputs.confidence, confidence_encoding)}
    return {output: packed for output, packed in encoded.items() if packed}
