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
ROS message types for bags written without ROS: a ``rosbags`` typestore and builders.

The typestore is rosbags' Jazzy one (sensor_msgs and std_msgs have not changed since Foxy)
with vision_msgs' LabelInfo and VisionClass registered from their .msg definitions, which
rosbags does not ship; the RIHS01 hash of these equals the one vision_msgs 4.x publishes.
"""

import json
from typing import Any

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability
from rosbags.interfaces import QosTime
from rosbags.typesys import get_types_from_msg, get_typestore, Stores
from rosbags.typesys.store import Typestore

from espnet_ros.imaging.cloud import OrganizedCloud, point_field_layout
from espnet_ros.imaging.codec import EncodedImage
from espnet_ros.streaming.outputs import LabelsCameraInfo
from espnet_ros.zoo.registry import class_table, labelled_classes, ModelSpec

IMAGE = 'sensor_msgs/msg/Image'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
STRING = 'std_msgs/msg/String'
LABEL_INFO = 'vision_msgs/msg/LabelInfo'
POINT_CLOUD = 'sensor_msgs/msg/PointCloud2'
POINT_FIELD = 'sensor_msgs/msg/PointField'
HEADER = 'std_msgs/msg/Header'
TIME = 'builtin_interfaces/msg/Time'

# vision_msgs 4.x (Humble and newer), fields only: comments do not enter the type hash.
_VISION_MSGS = {
    'vision_msgs/msg/VisionClass': 'uint16 class_id\nstring class_name\n',
    LABEL_INFO: 'std_msgs/Header header\nvision_msgs/VisionClass[] class_map\n'
                'float32 threshold\n',
}

_UNSET = QosTime(0, 0)  # rosbag2's "default" for deadline, lifespan and lease


def _qos(durability: QosDurability) -> Qos:
    """Return reliable keep-last-1 QoS with ``durability``, as the node offers."""
    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, durability, _UNSET, _UNSET,
               QosLiveliness.AUTOMATIC, _UNSET, False)


# The node's OUTPUT_QOS and LATCHED_QOS: ros2 bag play offers what the bag records.
OUTPUT_QOS = _qos(QosDurability.VOLATILE)
LATCHED_QOS = _qos(QosDurability.TRANSIENT_LOCAL)


def typestore() -> Typestore:
    """Return a typestore that knows the input images and every output type."""
    store = get_typestore(Stores.ROS2_JAZZY)
    types: dict = {}
    for name, definition in _VISION_MSGS.items():
        types.update(get_types_from_msg(definition, name))
    store.register(types)
    return store


def image_message(store: Typestore, header: Any, encoded: EncodedImage, height: int,
                  width: int) -> Any:
    """Return a sensor_msgs/Image carrying ``header`` and the packed pixels."""
    return store.types[IMAGE](header=header, height=height, width=width,
                              encoding=encoded.encoding, is_bigendian=0, step=encoded.step,
                              data=np.frombuffer(encoded.data, np.uint8))


def classes_message(store: Typestore, spec: ModelSpec) -> Any:
    """Return the std_msgs/String class table (JSON) that the node latches."""
    return store.types[STRING](data=json.dumps(class_table(spec)))


def label_info_message(store: Typestore, spec: ModelSpec, header: Any) -> Any:
    """Return vision_msgs/LabelInfo for ``spec``, as the node latches it."""
    vision_class = store.types['vision_msgs/msg/VisionClass']
    return store.types[LABEL_INFO](header=header, threshold=0.0, class_map=[
        vision_class(class_id=index, class_name=name)
        for index, name, _ in labelled_classes(spec.dataset)])


def camera_info_message(store: Typestore, header: Any, info: LabelsCameraInfo) -> Any:
    """Return the labels' sensor_msgs/CameraInfo stamped with ``header``."""
    return store.types[CAMERA_INFO](
        header=header, height=info.height, width=info.width,
        distortion_model=info.distortion_model, d=np.asarray(info.d, np.float64),
        k=np.asarray(info.k, np.float64), r=np.asarray(info.r, np.float64),
        p=np.asarray(info.p, np.float64), binning_x=0, binning_y=0,
        roi=store.types['sensor_msgs/msg/RegionOfInterest'](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def point_cloud_message(store: Typestore, stamp: Any, frame_id: str,
                        cloud: OrganizedCloud) -> Any:
    """Return a sensor_msgs/PointCloud2 holding ``cloud``'s buffer, in ``frame_id``."""
    point_field = store.types[POINT_FIELD]
    return store.types[POINT_CLOUD](
        header=store.types[HEADER](stamp=stamp, frame_id=frame_id), height=cloud.height,
        width=cloud.width, is_bigendian=False, point_step=cloud.point_step,
        row_step=cloud.row_step, is_dense=cloud.is_dense,
        fields=[point_field(name=name, offset=offset, datatype=getattr(point_field, datatype),
                            count=1)
                for name, offset, datatype in point_field_layout(cloud.dtype)],
        data=np.frombuffer(cloud.data, np.uint8))


def empty_header(store: Typestore) -> Any:
    """Return a std_msgs/Header with a zero stamp and no frame, as rclpy's Header()."""
    return store.types[HEADER](stamp=store.types[TIME](sec=0, nanosec=0), frame_id='')
