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

import re
from typing import Iterable, Optional, Sequence, TYPE_CHECKING

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
# A topic name's token holds letters, digits and underscores only.
_NOT_IN_TOPIC_TOKEN = re.compile(r'[^A-Za-z0-9_]')


def class_cloud_topic(name: str) -> str:
    """
    Return the topic of the dense cloud of class or group ``name`` (points_groups).

    ``segmentation/points/<name>``, characters a topic name cannot hold (the space of
    'traffic light') written as underscores.
    """
    token = _NOT_IN_TOPIC_TOKEN.sub('_', name)
    if token[:1].isdigit():
        token = '_' + token  # a token may not begin with a digit
    return f'{OUTPUT_TOPICS[Output.POINTS]}/{token}'


def points_groups_error(names: Sequence[str],
                        classes: Optional[Sequence[str]] = None) -> Optional[str]:
    """
    Return why ``names`` cannot name per-class clouds, or None.

    Each must be a non-empty name, once, with a topic of its own; with ``classes`` (the
    published class names) each must be one of them.
    """
    topics: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not name.strip():
            return f'points_groups: expected class or group names; got {name!r}'
        topic = class_cloud_topic(name)
        if topic in topics:
            return (f'points_groups: {name!r} and {topics[topic]!r} would share the topic '
                    f'{topic}')
        topics[topic] = name
        if classes is not None and name not in classes:
            return (f'points_groups: {name!r} is not a published class; they are: '
                    f'{", ".join(classes)}')
    return None


def encode_outputs(outputs: 'FrameOutputs', kinds: Iterable[Output], *,
                   confidence_encoding: str = CONFIDENCE_ENCODINGS[0]
                   ) -> dict[Output, EncodedImage]:
    """
    Return the outputs of ``kinds`` that a frame has, packed for sensor_msgs/Image.

    Only the fields of ``kinds`` are read, so pictures rendered when first read (see
    :class:`~espnet_ros.imaging.pipeline.FrameOutputs`) are not rendered for the others.
    """
    encoders = {
        Output.LABELS: lambda: encode_mono8(outputs.labels),
        Output.COLOR: lambda: outputs.color is not None and encode_rgb8(outputs.color),
        Output.OVERLAY: lambda: outputs.overlay is not None and encode_rgb8(outputs.overlay),
        Output.CONFIDENCE: lambda: outputs.confidence is not None and encode_confidence(
            outputs.confidence, confidence_encoding)}
    encoded = {kind: encoders[kind]() for kind in kinds}
    return {output: packed for output, packed in encoded.items() if packed}
