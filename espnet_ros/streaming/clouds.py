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
A frame's labelled cloud from its depth partner, with the checks and counts; no ROS.

The colour frame drives the pipeline: its outputs go out whether or not a depth frame was
found for it. :class:`CloudMaker` turns the frame's labels (and confidence) and the depth
image paired with it into an :class:`~espnet_ros.imaging.cloud.OrganizedCloud`, or says
why not: no partner within the slop (counted as unpaired), or a depth image or depth
CameraInfo that cannot give a cloud (counted as rejected, with the reason). Messages are
read by their fields, so rclpy's and rosbags' messages take the same path.
"""

from dataclasses import dataclass, replace
import threading
from typing import Any, Callable, Optional

import numpy as np

from espnet_ros.imaging.cloud import build_cloud, OrganizedCloud, pack_rgb
from espnet_ros.imaging.depth import (decode_depth_message, depth_intrinsics, DepthError,
                                      registration_error)
from espnet_ros.imaging.pipeline import FrameOutputs
from espnet_ros.streaming.problems import ProblemLog

# Labels are uint8: a colour for every possible id keeps a model swap from ever indexing
# past the palette (ids beyond it are black).
_LABEL_IDS = 256


@dataclass(frozen=True)
class CloudSettings:
    """How clouds are made: depth range (metres) and the stride over the labels' grid."""

    min_depth: float = 0.0
    max_depth: float = 10.0
    stride: int = 1


@dataclass(frozen=True)
class CloudStats:
    """A frozen snapshot of the clouds made and refused, for diagnostics."""

    published: int = 0
    unpaired: int = 0   # colour frames without a depth frame within the slop in the wait
    rejected: int = 0   # depth frames (or their CameraInfo) refused, or that gave no cloud
    negative: int = 0   # depth frames with negative samples (their points are NaN)
    last_problem: str = ''

    @property
    def problems(self) -> int:
        """Return the number of frames that went without a cloud."""
        return self.unpaired + self.rejected


def label_colours(palette: Any) -> np.ndarray:
    """Return the packed rgb of every uint8 class id: the palette's colours, then black."""
    colours = np.zeros(_LABEL_IDS, np.float32)
    packed = pack_rgb(palette)[:_LABEL_IDS]
    colours[:len(packed)] = packed
    return colours


def stamp_text(header: Any) -> str:
    """Return a header's stamp as 'sec.nanosec' for messages."""
    return f'{header.stamp.sec}.{header.stamp.nanosec:09d}'


class CloudMaker:
    """Makes the labelled cloud of each frame that has a depth partner; counts the others."""

    def __init__(self, warn: Callable[[str], None], *, info_topic: str) -> None:
        """``warn`` gets throttled reasons; ``info_topic`` is named when no CameraInfo came."""
        self._problems = ProblemLog(warn)
        self._info_topic = info_topic
        self._lock = threading.Lock()
        self._stats = CloudStats()

    def snapshot(self) -> CloudStats:
        """Return the counts so far."""
        with self._lock:
            return self._stats

    def refuse(self, reason: str) -> None:
        """Count a depth frame refused before pairing (stamp, size), with its reason."""
        self._count('rejected', reason)

    def make(self, header: Any, outputs: FrameOutputs, camera_size: tuple[int, int],
             depth: Optional[Any], depth_info: Optional[Any], *, slop_s: float,
             label_rgb: np.ndarray, settings: CloudSettings,
             wait_s: float = 0.0) -> Optional[OrganizedCloud]:
        """
        Return the cloud of a frame, or None with the reason counted and warned about.

        ``header`` is the colour frame's, ``camera_size`` its (height, width); ``depth`` is
        the depth Image paired with it (None: none within ``slop_s`` came in ``wait_s``),
        ``depth_info`` the latest depth CameraInfo (None: none received yet).
        """
        if depth is None:
            self._count('unpaired', f'no depth image within depth_sync_slop ({slop_s} s) of '
                                    f'the colour frame stamped {stamp_text(header)} came in '
                                    f'depth_sync_wait ({wait_s} s): no cloud')
            return None
        if depth_info is None:
            self._count('rejected', f'no depth CameraInfo received on {self._info_topic}: '
                                    'no cloud')
            return None
        try:
            image = decode_depth_message(depth)
            reason = registration_error(image.size, (camera_size[1], camera_size[0]),
                                        depth.header.frame_id, header.frame_id)
            if reason:
                raise DepthError(reason)
            k = depth_intrinsics(depth_info.k, (depth_info.width, depth_info.height),
                                 image.size)
            cloud = build_cloud(outputs.labels, image.metres, k, label_rgb=label_rgb,
                                confidence=outputs.confidence, min_depth=settings.min_depth,
                                max_depth=settings.max_depth, stride=settings.stride)
        except DepthError as error:
            self._count('rejected', f'no cloud: {error}')
            return None
        if image.negative:
            self._count('negative', f'depth image stamped {stamp_text(depth.header)} has '
                                    f'{image.negative} negative depths (REP 118 allows none); '
                                    'their points are NaN')
        with self._lock:
            self._stats = replace(self._stats, published=self._stats.published + 1)
        return cloud

    def _count(self, counter: str, text: str) -> None:
        with self._lock:
            counts = {counter: getattr(self._stats, counter) + 1}
            self._stats = replace(self._stats, last_problem=text, **counts)
        self._problems.warning(text)
