#!/usr/bin/env python3
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
Record a folder of images as a rosbag2 bag, for trying and timing ``espnet-ros bag``.

    scripts/images_to_bag.py ../shared/data/camvid/val out/camvid_bag --rate 30

Each image becomes a sensor_msgs/Image (bgr8), or a JPEG sensor_msgs/CompressedImage with
``--compressed``, on ``--topic``, received at ``--rate`` per second; stamps equal receive
times. Written with rosbags, like the command reads it, so no ROS install is needed.
"""

import argparse
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_typestore, Stores

from espnet_ros.imaging.files import list_images, read_bgr

NS_PER_S = 1_000_000_000


def main() -> None:
    """Write the bag the arguments describe."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('images', type=Path, nargs='+', help='image files or folders')
    parser.add_argument('out', type=Path, help='bag folder to create')
    parser.add_argument('--topic', default='/camera/image_raw')
    parser.add_argument('--frame-id', default='camera_optical_frame')
    parser.add_argument('--rate', type=float, default=30.0, help='frames per second')
    parser.add_argument('--storage', choices=('sqlite3', 'mcap'), default='sqlite3')
    parser.add_argument('--compressed', action='store_true', help='JPEG CompressedImage')
    args = parser.parse_args()
    store = get_typestore(Stores.ROS2_JAZZY)
    types = store.types
    msgtype = 'sensor_msgs/msg/' + ('CompressedImage' if args.compressed else 'Image')
    topic = args.topic + '/compressed' if args.compressed else args.topic
    paths = list_images(args.images)
    with Writer(args.out, version=8,
                storage_plugin=StoragePlugin[args.storage.upper()]) as writer:
        connection = writer.add_connection(topic, msgtype, typestore=store)
        for index, path in enumerate(paths):
            bgr = read_bgr(path)
            received = round(index * NS_PER_S / args.rate) + NS_PER_S
            header = types['std_msgs/msg/Header'](
                stamp=types['builtin_interfaces/msg/Time'](sec=received // NS_PER_S,
                                                           nanosec=received % NS_PER_S),
                frame_id=args.frame_id)
            if args.compressed:
                message = types[msgtype](header=header, format='bgr8; jpeg compressed bgr8',
                                         data=cv2.imencode('.jpg', bgr)[1].reshape(-1))
            else:
                height, width = bgr.shape[:2]
                message = types[msgtype](header=header, height=height, width=width,
                                         encoding='bgr8', is_bigendian=0, step=width * 3,
                                         data=np.ascontiguousarray(bgr).reshape(-1))
            writer.write(connection, received, store.serialize_cdr(message, msgtype))
    print(f'wrote {len(paths)} frames on {topic} to {args.out}')


if __name__ == '__main__':
    main()
