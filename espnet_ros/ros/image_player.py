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
The ``image_player`` node: a folder of images or a video file as a looping camera.

Publishes ``image`` (sensor_msgs/Image, or ``image/compressed`` as JPEG) and
``camera_info`` at ``rate`` Hz, stamped with the current time, optionally resized to
``width`` x ``height``. Frames are read and packed
once, so the player keeps up with fast rates; a video is decoded as it plays. With
``wait_for_subscriber`` (the default) nothing is published until something subscribes to the
image topic, so that a node started next to it sees the first frame of the file.
"""

import math
from pathlib import Path
import signal
import sys
from typing import Iterator, Optional

import cv2
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from espnet_ros.compat import try_shutdown_ros
from espnet_ros.imaging.codec import encode_rgb8
from espnet_ros.imaging.files import list_images
from espnet_ros.ros.messages import image_message
from espnet_ros.ros.qos import camera_qos
from espnet_ros.ros.shutdown import ignore_further_signals, ignore_signal
from espnet_ros.ros.topics import camera_topic

JPEG_QUALITY = 90
VIDEO_SUFFIXES = ('.mp4', '.avi', '.mkv', '.mov', '.webm')


def pinhole_info(width: int, height: int, horizontal_fov_deg: float) -> CameraInfo:
    """Return an undistorted pinhole CameraInfo with square pixels and a centred axis."""
    focal = width / (2.0 * math.tan(math.radians(horizontal_fov_deg) / 2.0))
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return CameraInfo(width=width, height=height, distortion_model='plumb_bob',
                      d=[0.0] * 5, k=[focal, 0.0, cx, 0.0, focal, cy, 0.0, 0.0, 1.0],
                      r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[focal, 0.0, cx, 0.0, 0.0, focal, cy, 0.0, 0.0, 0.0, 1.0, 0.0])


def read_frames(source: Path) -> Iterator[np.ndarray]:
    """Yield BGR frames from a video file, once through."""
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise ValueError(f'{source} cannot be opened as a video')
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


class ImagePlayerNode(Node):
    """Plays image files or a video as a camera."""

    def __init__(self) -> None:
        super().__init__('image_player')
        self.source = Path(self.declare_parameter('source', '').value)
        rate = self.declare_parameter('rate', 10.0).value
        self.loop = self.declare_parameter('loop', True).value
        self.max_frames = self.declare_parameter('max_frames', 0).value
        self.frame_id = self.declare_parameter('frame_id', 'camera').value
        self.transport = self.declare_parameter('transport', 'raw').value
        fov = self.declare_parameter('horizontal_fov_deg', 60.0).value
        # 0 keeps each frame's own size; otherwise every frame is resized to width x height.
        self.size = (self.declare_parameter('width', 0).value,
                     self.declare_parameter('height', 0).value)
        reliability = self.declare_parameter('reliability', 'best_effort').value
        self.waiting = self.declare_parameter('wait_for_subscriber', True).value
        if rate <= 0 or self.transport not in ('raw', 'compressed'):
            raise ValueError('rate must be > 0 and transport raw or compressed')
        qos = camera_qos(reliability)
        compressed = self.transport == 'compressed'
        self.image_pub = self.create_publisher(
            CompressedImage if compressed else Image, camera_topic(self, compressed), qos)
        self.info_pub = self.create_publisher(CameraInfo, 'camera_info', qos)
        self.frames = self._load()
        self.video = read_frames(self.source) if not self.frames else iter(())
        self.fov = fov
        self.infos: dict[tuple[int, int], CameraInfo] = {}
        self.published = 0
        self.index = 0
        self.create_timer(1.0 / rate, self._tick)
        self.get_logger().info(
            f'playing {self.source} at {rate} Hz on {self.image_pub.topic_name}'
            + (', once something subscribes to it (wait_for_subscriber)' if self.waiting
               else ', subscribed or not (wait_for_subscriber false)'))

    def _load(self) -> list:
        """Return the frames packed as messages (images) or a lazy video iterator."""
        if self.source.suffix.lower() in VIDEO_SUFFIXES:
            return []
        return [self._pack(cv2.imread(str(path), cv2.IMREAD_COLOR))
                for path in list_images([self.source])]

    def _pack(self, bgr: Optional[np.ndarray]) -> object:
        if bgr is None:
            raise ValueError(f'an image in {self.source} cannot be read')
        if all(self.size) and bgr.shape[1::-1] != self.size:
            bgr = cv2.resize(bgr, self.size, interpolation=cv2.INTER_AREA)
        if self.transport == 'compressed':
            ok, jpeg = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            return CompressedImage(format='jpeg', data=jpeg.tobytes()), bgr.shape[:2]
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return image_message(Header(), encode_rgb8(rgb), *rgb.shape[:2]), rgb.shape[:2]

    def _next(self) -> Optional[tuple]:
        if self.frames:
            if self.index >= len(self.frames):
                if not self.loop:
                    return None
                self.index = 0
            frame = self.frames[self.index]
            self.index += 1
            return frame
        bgr = next(self.video, None)
        if bgr is None and self.loop:
            self.video = read_frames(self.source)
            bgr = next(self.video, None)
        return None if bgr is None else self._pack(bgr)

    def _tick(self) -> None:
        if self.max_frames and self.published >= self.max_frames:
            return
        if self.waiting:
            if not self.image_pub.get_subscription_count():
                return
            self.waiting = False
            self.get_logger().info(f'{self.image_pub.topic_name} has a subscriber: playing')
        frame = self._next()
        if frame is None:
            return
        message, (height, width) = frame
        message.header.stamp = self.get_clock().now().to_msg()
        message.header.frame_id = self.frame_id
        info = self.infos.setdefault((width, height), pinhole_info(width, height, self.fov))
        info.header = message.header
        self.image_pub.publish(message)
        self.info_pub.publish(info)
        self.published += 1


def main(args: Optional[list[str]] = None) -> int:
    """Run the player until shutdown; a Ctrl-C or SIGTERM ends it with status 0."""
    try:
        # rclpy's own handler ends the spin on SIGINT and then calls Python's, whose
        # KeyboardInterrupt would land anywhere in rclpy (half-built tasks print errors).
        signal.signal(signal.SIGINT, ignore_signal)
        rclpy.init(args=args)
        executor: Optional[SingleThreadedExecutor] = None
        try:
            # Built before the node logs that it plays: a Ctrl-C from then on does not cut
            # the executor's construction short (rclpy then prints errors from its __del__).
            executor = SingleThreadedExecutor()
            executor.add_node(ImagePlayerNode())
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except Exception:  # noqa: B902 - narrowed below
            # A signal shuts ROS down under a frame being published (RCLError 'context is
            # invalid'): a clean stop, as in the segmenter. Anything else is raised.
            if rclpy.ok():
                raise
        finally:
            ignore_further_signals()
            if executor is not None:
                executor.shutdown()
            try_shutdown_ros()
    except KeyboardInterrupt:  # the signal reached Python after rclpy had begun the shutdown
        pass
    return 0


if __name__ == '__main__':
    sys.exit(main())
