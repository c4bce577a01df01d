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
The one output path without ROS: the writer's rules, the Output names, the parameter view.

The writer runs on a backend that records what it is handed; messages are the rosbags
typestore's (real ROS message types, no ROS install), as the bag tool hands them over.
"""

import dataclasses
from typing import Any, Optional

import numpy as np
import pytest

from espnet_ros.imaging.codec import EncodedImage
from espnet_ros.imaging.outputs import OUTPUT_TOPICS
from espnet_ros.imaging.pipeline import FrameOutputs
from espnet_ros.offline.messages import typestore
from espnet_ros.ros.parameter_table import (BY_NAME, check_together, Effect, effects_of,
                                            NodeParameters, PARAMETERS)
from espnet_ros.runtime.options import Output
from espnet_ros.streaming.outputs import LabelsCameraInfo, OutputSettings, OutputWriter
from espnet_ros.streaming.pairing import Paired
from espnet_ros.zoo.registry import get_spec

STORE = typestore()
SIZE = (8, 6)  # labels' width, height
FRAME_ID = 'camera_optical'


class RecordingBackend:
    """A MessageBackend that records what it is handed; ``taken`` are the wanted outputs."""

    def __init__(self, *taken: Output) -> None:
        self.taken = set(taken)
        self.sent: list[tuple[Output, Any]] = []

    def wants(self, output: Output) -> bool:
        return output in self.taken

    def image(self, output: Output, header: Any, encoded: EncodedImage, height: int,
              width: int) -> None:
        self.sent.append((output, encoded.encoding))

    def camera_info(self, header: Any, info: LabelsCameraInfo) -> None:
        self.sent.append((Output.CAMERA_INFO, info))

    def cloud(self, stamp: Any, frame_id: str, cloud: Any) -> None:
        self.sent.append((Output.POINTS, (stamp, frame_id, cloud)))

    def latch(self, spec: Any, header: Optional[Any]) -> None:
        self.sent.append((Output.CLASSES, spec.name))

    def closed(self) -> bool:
        return False

    def close(self) -> None:
        self.sent.append(('closed', None))

    def names(self) -> list[Output]:
        return [output for output, _ in self.sent]


class OneDepth:
    """A DepthSource with one depth image, paired with any stamp."""

    def __init__(self, image: Any, info: Any) -> None:
        self.image, self.info = image, info

    def add_colour(self, stamp_ns: int, frame: Any) -> list[Paired]:
        return [Paired(frame, self.image, stamp_ns)]

    def apply(self, settings: Any) -> None:
        pass


def header(sec: int = 5) -> Any:
    return STORE.types['std_msgs/msg/Header'](
        stamp=STORE.types['builtin_interfaces/msg/Time'](sec=sec, nanosec=0), frame_id=FRAME_ID)


def outputs(confidence: bool = True) -> FrameOutputs:
    width, height = SIZE
    labels = np.arange(width * height, dtype=np.uint8).reshape(height, width) % 19
    colour = np.zeros((height, width, 3), np.uint8)
    return FrameOutputs(labels=labels, color=colour, overlay=colour,
                        confidence=np.full((height, width), 0.5, np.float32) if confidence
                        else None)


def writer_on(backend: RecordingBackend) -> OutputWriter:
    return OutputWriter(backend, warn=lambda text: None, depth_info_topic='/depth/camera_info')


def depth_pair(metres: float = 2.0) -> tuple[Any, Any]:
    width, height = SIZE
    millimetres = np.full((height, width), metres * 1000, '<u2')
    image = STORE.types['sensor_msgs/msg/Image'](
        header=header(), height=height, width=width, encoding='16UC1', is_bigendian=0,
        step=width * 2, data=millimetres.view(np.uint8).reshape(-1))
    info = STORE.types['sensor_msgs/msg/CameraInfo'](
        header=header(), height=height, width=width, distortion_model='plumb_bob',
        d=np.zeros(5), k=np.array([4.0, 0, 3.5, 0, 4.0, 2.5, 0, 0, 1]), r=np.eye(3).reshape(-1),
        p=np.zeros(12), binning_x=0, binning_y=0,
        roi=STORE.types['sensor_msgs/msg/RegionOfInterest'](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    return image, info


def test_labels_only_when_taken_and_confidence_not_for_the_cloud_alone() -> None:
    backend = RecordingBackend(Output.COLOR, Output.OVERLAY)
    writer = writer_on(backend)
    writer.publish(header(), outputs(), SIZE[::-1])
    assert backend.names() == [Output.COLOR, Output.OVERLAY]
    backend.taken.add(Output.LABELS)
    backend.sent.clear()
    writer.publish(header(), outputs(), SIZE[::-1])
    assert backend.names() == [Output.LABELS, Output.COLOR, Output.OVERLAY]


def test_labels_are_sent_before_the_pictures_are_rendered() -> None:
    """Planners wait for the labels: the colour and overlay are drawn only after they went."""
    backend = RecordingBackend(Output.LABELS, Output.CONFIDENCE, Output.COLOR, Output.OVERLAY)
    given = outputs()
    sent_when_drawn: list = []

    def views() -> tuple[np.ndarray, np.ndarray]:
        sent_when_drawn.append(backend.names())
        return given.color, given.overlay
    lazy = FrameOutputs(given.labels, confidence=given.confidence, views=views)
    writer_on(backend).publish(header(), lazy, SIZE[::-1])
    assert sent_when_drawn == [[Output.LABELS, Output.CONFIDENCE]]
    assert backend.names() == [Output.LABELS, Output.CONFIDENCE, Output.COLOR, Output.OVERLAY]
    writer_on(RecordingBackend(Output.LABELS)).publish(
        header(), FrameOutputs(given.labels, views=views), SIZE[::-1])
    assert len(sent_when_drawn) == 2  # the frame asked for pictures: drawn once, then sent


def test_confidence_is_wanted_for_the_cloud_and_sent_only_when_taken() -> None:
    backend = RecordingBackend(Output.LABELS, Output.POINTS)
    writer = writer_on(backend)
    assert not writer.wants(Output.CONFIDENCE)  # no depth: no cloud
    assert writer.use_depth(OneDepth(*depth_pair())) is None
    assert writer.wants(Output.CONFIDENCE)
    writer.publish(header(), outputs(), SIZE[::-1])
    # What planners read first: the labels and the cloud, then the pictures.
    assert backend.names() == [Output.LABELS, Output.POINTS, Output.COLOR, Output.OVERLAY]
    stamp, frame_id, cloud = dict(backend.sent)[Output.POINTS]
    assert (stamp.sec, frame_id, cloud.height, cloud.width) == (5, FRAME_ID, SIZE[1], SIZE[0])
    assert 'confidence' in cloud.dtype.names
    assert writer.cloud_stats().published == 1
    backend.taken.add(Output.CONFIDENCE)
    backend.sent.clear()
    writer.publish(header(), outputs(), SIZE[::-1])
    assert Output.CONFIDENCE in backend.names()
    assert isinstance(writer.use_depth(None), OneDepth) and writer.cloud_stats() is None


def test_a_frame_without_depth_partner_is_counted_not_sent() -> None:
    backend = RecordingBackend(Output.POINTS)
    writer = writer_on(backend)
    image, info = depth_pair()
    writer.use_depth(OneDepth(None, info))
    writer.publish(header(), outputs(), SIZE[::-1])
    assert Output.POINTS not in backend.names()
    assert writer.cloud_stats().unpaired == 1


def test_camera_info_for_the_labels_grid_once_known() -> None:
    backend = RecordingBackend()
    writer = writer_on(backend)
    writer.publish(header(), outputs(), SIZE[::-1])
    assert Output.CAMERA_INFO not in backend.names()
    _, info = depth_pair()
    writer.use_camera_info(info)
    camera_size = (SIZE[1] * 2, SIZE[0] * 2)  # the camera at twice the labels' size
    info.height, info.width = camera_size
    writer.publish(header(), outputs(), camera_size)
    sent = dict(backend.sent)[Output.CAMERA_INFO]
    assert (sent.width, sent.height) == SIZE
    assert sent.k[0] == pytest.approx(2.0)  # fx halved with the grid


def test_announce_latches_through_the_backend_and_close_releases_it() -> None:
    backend = RecordingBackend()
    writer = writer_on(backend)
    writer.announce(get_spec('espnet_p2q3_cityscapes'))
    writer.close()
    assert backend.sent == [(Output.CLASSES, 'espnet_p2q3_cityscapes'), ('closed', None)]


def test_settings_errors_are_specific() -> None:
    assert OutputSettings().error() is None
    assert 'slop' in OutputSettings(depth_sync_slop_s=-1.0).error()
    assert 'encoding' in OutputSettings(confidence_encoding='16UC1').error()


def test_output_names_and_topics() -> None:
    assert OUTPUT_TOPICS[Output.POINTS] == OUTPUT_TOPICS['points'] == 'segmentation/points'
    assert f'{Output.LABELS}' == 'labels'


def test_the_parameter_view_is_the_table_frozen_and_typed() -> None:
    parameters = NodeParameters()
    assert [field.name for field in dataclasses.fields(parameters)] == [
        spec.name for spec in PARAMETERS]
    for spec in PARAMETERS:
        assert getattr(parameters, spec.name) == spec.default
        assert isinstance(spec.effect, Effect)
    with pytest.raises(dataclasses.FrozenInstanceError):
        parameters.publish_points = True
    changed = parameters.with_changes({'publish_points': True, 'min_depth': 20.0})
    assert changed.publish_points and not parameters.publish_points
    assert 'min_depth' in check_together(changed)
    assert effects_of(['model', 'max_rate']) == {Effect.RELOAD, Effect.LIVE}
    assert BY_NAME['threads'].effect is Effect.STARTUP
    assert parameters.as_dict()['model'] == parameters.model
