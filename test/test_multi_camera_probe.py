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
The multi-camera benchmark's probe counts only what the set-up being measured published.

The set-ups follow one another on the same topics (and the first two under the same node
name). Labels and diagnostics the set-up before left queued must not open the next set-up's
measuring window while its node is still starting: under load that left a window with no
frame at all.
"""

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from ros_helpers import header_at, Probe
from sensor_msgs.msg import Image

from espnet_ros.ros.qos import OUTPUT_QOS
from espnet_ros.streaming.diagnostics import DROPPED_KEY, RECEIVED_KEY
from espnet_ros.tools.multi_camera_bench import CameraProbe

NAMESPACE = '/stale_probe_test'
CAMERA = 'cam0'
HARDWARE_ID = f'{NAMESPACE}/segmenter/{CAMERA}'
WAIT_S = 30.0
OLD_S = 5  # how long before the probe's clear() the set-up before stamped its messages


def labels(stamp_ns: int) -> Image:
    message = Image(header=header_at(stamp_ns, CAMERA), height=1, width=1, encoding='mono8',
                    step=1)
    message.data = [0]
    return message


def diagnostics(stamp_ns: int, received: int) -> DiagnosticArray:
    status = DiagnosticStatus(hardware_id=HARDWARE_ID, values=[
        KeyValue(key=RECEIVED_KEY, value=str(received)), KeyValue(key=DROPPED_KEY, value='0')])
    return DiagnosticArray(header=header_at(stamp_ns, ''), status=[status])


def test_what_the_set_up_before_left_queued_is_not_counted(probe: Probe) -> None:
    cameras = CameraProbe(NAMESPACE, [CAMERA], context=probe.context)
    probe.executor.add_node(cameras)
    try:
        labels_pub = probe.node.create_publisher(
            Image, f'{NAMESPACE}/{CAMERA}/segmentation/labels', OUTPUT_QOS)
        diagnostics_pub = probe.node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        probe.spin_until(lambda: labels_pub.get_subscription_count() > 0
                         and diagnostics_pub.get_subscription_count() > 0, WAIT_S,
                         'the probe to subscribe')
        cameras.clear()
        now = cameras.get_clock().now().nanoseconds
        old = now - OLD_S * 10**9
        # What the set-up before published, arriving late (labels keep one message queued:
        # one at a time), then the new set-up's first.
        labels_pub.publish(labels(old))
        diagnostics_pub.publish(diagnostics(old, 40))
        probe.spin_until(lambda: cameras.stale == 2, WAIT_S, "the set-up before's messages")
        assert cameras.latencies_ms[CAMERA] == [] and cameras.counts == {}
        labels_pub.publish(labels(now + 1))
        diagnostics_pub.publish(diagnostics(now + 1, 2))
        probe.spin_until(lambda: cameras.latencies_ms[CAMERA] and cameras.counts, WAIT_S,
                         "the new set-up's messages")
        assert len(cameras.latencies_ms[CAMERA]) == 1
        assert cameras.counts == {HARDWARE_ID: {RECEIVED_KEY: 2, DROPPED_KEY: 0}}
    finally:
        probe.executor.remove_node(cameras)
        cameras.destroy_node()
