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
Cameras and subscribers as they come and go, and what an odd camera sends, over real DDS.

One small node with a reliable camera subscription serves the module. It must say why an
incompatible camera sends nothing, survive a camera or a subscriber coming and going (and
process frames while nobody listens), give a CameraInfo ROI's intrinsics, keep absurd stamps
out of the latency, and refuse a decompression bomb from its header. Time limits here are
generous bounds against waits of minutes, never measurements.
"""

import time
from typing import Any, Callable, Optional

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rclpy.qos import qos_profile_sensor_data
from ros_helpers import (diagnostic_values, GENEROUS_S, header_at, NodeProcess, Probe,
                         Recorder, RELIABLE, send_until_answered, sender, SMALL_CAMERA_SIZE,
                         SMALL_NODE, small_node_fixtures, WaitTimeout)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from test_image_header import jpeg_bomb

NAMESPACE = '/cameras'
NODE = f'{NAMESPACE}/segmenter'
BASE = {**SMALL_NODE, 'reliability': 'reliable'}
CAMERA_SIZE = SMALL_CAMERA_SIZE
UNHEARD_FRAMES = 3  # frames sent while nobody subscribes to the labels
ATTEMPTS = 10


segmenter, camera, labels = small_node_fixtures(NAMESPACE, BASE)


def latest_diagnostics(probe: Probe, after_ns: int, timeout_s: float = 30.0,
                       condition: Any = lambda values: True) -> dict[str, str]:
    """Return the node's diagnostics first published after ``after_ns`` that pass ``condition``."""
    recorder = probe.record(DiagnosticArray, '/diagnostics')

    def found() -> Optional[dict[str, str]]:
        for arrival, message in reversed(recorder.messages):
            values = diagnostic_values(message, NODE)
            if values is not None and arrival > after_ns:
                values['message'] = next(status.message for status in message.status
                                         if status.name.startswith(NODE))
                if condition(values):
                    return values
        return None
    try:
        return probe.spin_until(found, timeout_s, 'diagnostics')
    finally:
        probe.forget([recorder])


def test_incompatible_camera_qos_is_reported(probe: Probe, segmenter: NodeProcess) -> None:
    """A best-effort camera and a reliable subscription: a warning names topic and both QoS."""
    camera = probe.node.create_publisher(Image, f'{NAMESPACE}/image', qos_profile_sensor_data)
    try:
        wanted = [f'incompatible QoS on {NAMESPACE}/image', 'requests reliable',
                  'offers best_effort', 'reliability']
        probe.spin_until(lambda: all(text in segmenter.log() for text in wanted), 30.0,
                         'the incompatible QoS warning')
        assert camera.get_subscription_count() == 0
    finally:
        probe.node.destroy_publisher(camera)


def test_camera_stops_and_comes_back(probe: Probe, segmenter: NodeProcess, scene: np.ndarray,
                                     labels: Recorder) -> None:
    """Outputs stop with the camera and resume when a new camera publisher appears."""
    for _ in range(2):
        camera = probe.node.create_publisher(Image, f'{NAMESPACE}/image', RELIABLE)
        try:
            probe.spin_until(camera.get_subscription_count, 30.0, 'the camera to match')
            send_until_answered(probe, sender(camera, scene), {'labels': labels})
        finally:
            probe.node.destroy_publisher(camera)
        probe.spin_until(lambda: not probe.node.count_publishers(f'{NAMESPACE}/image'), 10.0,
                         'the camera to go')
        quiet = len(labels.messages)
        probe.spin_for(1.0)
        assert len(labels.messages) == quiet
    assert segmenter.running()


def test_subscribers_come_and_go(probe: Probe, segmenter: NodeProcess,
                                 scene: np.ndarray) -> None:
    """Frames are still processed while nobody listens; each new subscriber gets labels."""
    camera = probe.node.create_publisher(Image, f'{NAMESPACE}/image', RELIABLE)
    diagnostics = probe.record(DiagnosticArray, '/diagnostics')

    def processed_after(after_ns: int) -> Any:
        for arrival, message in reversed(diagnostics.messages):
            values = diagnostic_values(message, NODE)
            if values is not None and arrival > after_ns:
                return int(values['frames processed']) + 1  # truthy, even for 0 frames
        return None

    def processed_beyond(count: int, after_ns: int) -> Callable[[], Any]:
        def check() -> Any:
            processed = processed_after(after_ns)
            return processed if processed is not None and processed > count else None
        return check

    try:
        probe.spin_until(camera.get_subscription_count, 30.0, 'the camera to match')
        for _ in range(3):
            labels = probe.record(Image, f'{NAMESPACE}/segmentation/labels')
            send_until_answered(probe, sender(camera, scene), {'labels': labels})
            probe.forget([labels])
            probe.spin_until(lambda: not probe.node.count_subscribers(
                f'{NAMESPACE}/segmentation/labels'), 10.0, 'the subscriber to go')
            heard = time.time_ns()
            count = probe.spin_until(lambda: processed_after(heard), 30.0, 'diagnostics')
            for _ in range(UNHEARD_FRAMES):
                # One frame at a time, each processed before the next: none may replace another.
                sent = time.time_ns()
                sender(camera, scene)(sent)
                count = probe.spin_until(processed_beyond(count, sent), 60.0,
                                         'a frame processed while nobody listens')
    finally:
        probe.forget([diagnostics])
        probe.node.destroy_publisher(camera)
    assert segmenter.running()


def test_camera_info_with_a_roi_gives_the_roi_intrinsics(probe: Probe, segmenter: NodeProcess,
                                                         camera: Any, scene: np.ndarray) -> None:
    """A 640x480 sensor, the 320x240 ROI at (100, 50) binned by 2: the 160x120 frame."""
    k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    p = [500.0, 0.0, 320.0, 0.0, 0.0, 500.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info_pub = probe.node.create_publisher(CameraInfo, f'{NAMESPACE}/camera_info', RELIABLE)
    infos = probe.record(CameraInfo, f'{NAMESPACE}/segmentation/camera_info')
    try:
        probe.spin_until(info_pub.get_subscription_count, 30.0, 'camera_info to match')

        def publish(stamp: int) -> None:
            info = CameraInfo(header=header_at(stamp, 'cam'), width=640, height=480,
                              distortion_model='plumb_bob', d=[0.0] * 5, k=k, p=p,
                              r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                              binning_x=2, binning_y=2)
            info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = (
                100, 50, 320, 240)
            info_pub.publish(info)
            probe.spin_for(0.2)  # the node must hold the info before the frame comes
            sender(camera, scene)(stamp)
        _, got = send_until_answered(probe, publish, {'camera_info': infos})
        out = got['camera_info']
        # Shift by the ROI, then scale from the 320x240 ROI to the 160x120 labels.
        assert np.allclose(out.k, [250.0, 0.0, 110.0, 0.0, 250.0, 95.0, 0.0, 0.0, 1.0]), out.k
        assert np.allclose(np.asarray(out.p).reshape(3, 4)[:, :3].reshape(-1), out.k)
        assert (out.width, out.height) == CAMERA_SIZE
        assert (out.roi.width, out.roi.height, out.binning_x) == (0, 0, 0)
    finally:
        probe.forget([infos])
        probe.node.destroy_publisher(info_pub)


def test_an_absurd_stamp_stays_out_of_the_latency(probe: Probe, segmenter: NodeProcess,
                                                  camera: Any, labels: Recorder,
                                                  scene: np.ndarray) -> None:
    hour_ns = 3600 * 10 ** 9
    for _ in range(ATTEMPTS):  # a frame may be lost to a newer one; stamps keep rising
        future = time.time_ns() + hour_ns
        sender(camera, scene)(future)
        try:
            probe.spin_until(lambda: labels.with_stamp(future), 3.0, 'the future frame')
            break
        except WaitTimeout:
            continue
    assert labels.with_stamp(future), segmenter.describe()
    key = 'frames with implausible stamps (not in latency)'
    values = latest_diagnostics(probe, time.time_ns(),
                                condition=lambda values: int(values.get(key, 0)) >= 1)
    p95 = float(values['latency p95 (ms)'])
    assert np.isnan(p95) or abs(p95) < GENEROUS_S * 1000, values


def test_a_decompression_bomb_is_refused_from_its_header(probe: Probe, segmenter: NodeProcess,
                                                         labels: Recorder,
                                                         scene: np.ndarray) -> None:
    import cv2
    assert probe.set_parameters(NODE, {'input_transport': 'compressed'})[0].successful
    compressed = probe.node.create_publisher(CompressedImage, f'{NAMESPACE}/image/compressed',
                                             RELIABLE)
    good = cv2.imencode('.jpg', scene[..., ::-1])[1].tobytes()
    try:
        probe.spin_until(compressed.get_subscription_count, 30.0, 'the compressed camera')

        def publish(stamp: int, data: bytes) -> None:
            compressed.publish(CompressedImage(header=header_at(stamp, 'cam'), format='jpeg',
                                               data=data))
        for _ in range(ATTEMPTS):  # the first may lose to the absurd stamp of the test before
            publish(time.time_ns(), jpeg_bomb())
            try:
                probe.spin_until(lambda: 'JPEG header declares' in segmenter.log(), 3.0,
                                 'the bomb to be refused')
                break
            except WaitTimeout:
                continue
        assert 'JPEG header declares 900,000,000 pixels' in segmenter.log(), segmenter.describe()
        send_until_answered(probe, lambda stamp: publish(stamp, good), {'labels': labels})
        values = latest_diagnostics(probe, time.time_ns())
        assert int(values['frames malformed']) >= 1, values
    finally:
        probe.node.destroy_publisher(compressed)
        probe.set_parameters(NODE, {'input_transport': 'raw'})
