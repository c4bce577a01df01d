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
Camera topic names as image_transport gives them.

image_transport names a transport's topic after the image topic *as remapped*: with
``-r image:=/front/image_raw``, the compressed frames are on ``/front/image_raw/compressed``.
A plain relative ``image/compressed`` would stay ``/image/compressed`` under that remapping.
Likewise the camera's CameraInfo is the ``camera_info`` beside the image topic as remapped
(``/front/camera_info``), unless ``camera_info`` itself is remapped.
"""

from rclpy.expand_topic_name import expand_topic_name
from rclpy.node import Node

IMAGE_TOPIC = 'image'
CAMERA_INFO_TOPIC = 'camera_info'
COMPRESSED_SUFFIX = 'compressed'


def camera_topic(node: Node, compressed: bool, image_topic: str = IMAGE_TOPIC) -> str:
    """Return the fully qualified topic of ``node``'s camera frames, raw or compressed."""
    resolved = node.resolve_topic_name(image_topic)
    return f'{resolved}/{COMPRESSED_SUFFIX}' if compressed else resolved


def camera_info_topic(node: Node, image_topic: str = IMAGE_TOPIC,
                      info_topic: str = CAMERA_INFO_TOPIC) -> str:
    """Return the fully qualified CameraInfo topic: as remapped, else beside the image's."""
    resolved = node.resolve_topic_name(info_topic)
    if resolved != expand_topic_name(info_topic, node.get_name(), node.get_namespace()):
        return resolved  # remapped explicitly
    image = node.resolve_topic_name(image_topic)
    return f'{image.rpartition("/")[0]}/{CAMERA_INFO_TOPIC}'
