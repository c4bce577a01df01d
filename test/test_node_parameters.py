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
Parameters and reloads of the README's node, changed through its services over real DDS.

A change applies at the next frame; a bad value is refused with the reason and frames still
flow; input_width alone keeps the training aspect; device auto warns once; a reload loads
beside the old engine, which serves until the swap. The node (readme_node.py) runs under a
name of its own; tests that change its parameters put them back. Reloads that fail or take
minutes are in test_node_parameter_faults.py.
"""

import json
import time

import numpy as np
import pytest
from readme_node import (CAMERA_SIZE, check_outputs, exchange, frame_sender, LATCHED, MODEL,
                         NETWORK_SIZE, ParameterChanges, readme_node_fixtures)
from ros_helpers import image_array, NodeProcess, Probe, send_until_answered, stamp_ns
from sensor_msgs.msg import Image
from std_msgs.msg import String
import torch

NODE = '/parameters_segmenter'


segmenter, camera, publishers, parameters = readme_node_fixtures(NODE)


def test_live_parameters_apply_to_next_frame(probe: Probe, publishers: dict, camera: np.ndarray,
                                             parameters: ParameterChanges) -> None:
    """overlay_alpha and publish_color, set through the parameter service, take effect."""
    send = frame_sender(publishers, camera)
    for alpha in (0.0, 1.0):
        assert parameters({'overlay_alpha': alpha})[0].successful
        _, got = exchange(probe, send, ('color', 'overlay'))
        overlay, color = image_array(got['overlay']), image_array(got['color'])
        assert np.array_equal(overlay, camera if alpha == 0.0 else color), f'alpha {alpha}'
    color = probe.record(Image, '/segmentation/color')
    labels = probe.record(Image, '/segmentation/labels')
    try:
        # Colour flows first, so its absence below is the parameter, not a missed subscriber.
        send_until_answered(probe, send, {'labels': labels, 'color': color})
        assert parameters({'publish_color': False})[0].successful
        switched_off = time.time_ns()
        send_until_answered(probe, send, {'labels': labels})
        probe.spin_for(1.0)
        assert not [m for _, m in color.messages if stamp_ns(m.header) > switched_off]
        assert parameters({'publish_color': True})[0].successful
        send_until_answered(probe, send, {'labels': labels, 'color': color})
    finally:
        probe.forget([color, labels])


@pytest.mark.parametrize('values,because', [
    ({'overlay_alpha': 2.0}, 'range'),
    ({'overlay_alpha': 'opaque'}, 'type'),
    ({'model': 'no_such_model'}, 'unknown model'),
    ({'input_width': 300}, 'multiples of 8'),
    ({'autostart': False}, 'read-only'),
])
def test_invalid_parameters_are_refused(probe: Probe, publishers: dict, camera: np.ndarray,
                                        parameters: ParameterChanges, values: dict,
                                        because: str) -> None:
    """A bad value is refused with the reason; the old value stays and frames still flow."""
    names = list(values)
    before = probe.get_parameters(NODE, names)
    result = parameters(values, atomically=False)[0]
    assert not result.successful
    assert because in result.reason.lower(), result.reason
    assert probe.get_parameters(NODE, names) == before
    stamp, got = exchange(probe, frame_sender(publishers, camera), ('labels',))
    check_outputs(got, stamp, CAMERA_SIZE)


def test_lone_input_width_keeps_the_training_aspect(
        probe: Probe, publishers: dict, camera: np.ndarray, parameters: ParameterChanges,
        segmenter: NodeProcess) -> None:
    """input_width alone runs at the training aspect ratio; a width off the stride is refused."""
    assert parameters({'output_resolution': 'network'})[0].successful
    result = parameters({'input_width': 192, 'input_height': 0})[0]
    assert result.successful, result.reason
    stamp, got = exchange(probe, frame_sender(publishers, camera), ('labels',))
    # 1024x512 training size: 192 wide is 96 high, and that is what the network ran at.
    check_outputs(got, stamp, (192, 96))
    assert probe.get_parameters(NODE, ['input_width', 'input_height']) == {
        'input_width': 192, 'input_height': 0}
    assert (f'model {MODEL} at 192x96 (height from the training aspect ratio 1024x512, '
            'rounded to a multiple of 8)') in segmenter.log(), segmenter.describe()
    result = parameters({'input_width': 250}, atomically=False)[0]
    assert not result.successful
    assert 'input width 250' in result.reason and 'nearest: 248 or 256' in result.reason, (
        result.reason)
    assert probe.get_parameters(NODE, ['input_width']) == {'input_width': 192}
    stamp, got = exchange(probe, frame_sender(publishers, camera), ('labels',))
    check_outputs(got, stamp, (192, 96))


def test_device_auto_warns_once(probe: Probe, parameters: ParameterChanges,
                                segmenter: NodeProcess) -> None:
    """Without CUDA, device auto warns at its first load, not again at every reload."""
    if torch.cuda.is_available():
        pytest.skip('CUDA is available: device auto does not warn')
    warning = 'device auto: CUDA is not available, running on the CPU'
    for values in ({'device': 'auto'}, {'input_width': 192}, {'input_width': 128}):
        result = parameters(values)[0]
        assert result.successful, result.reason
    assert segmenter.log().count(warning) == 1, segmenter.describe()


def test_reload_keeps_serving_then_switches(probe: Probe, publishers: dict, camera: np.ndarray,
                                            parameters: ParameterChanges) -> None:
    """A new model and size load beside the old engine, which serves until the swap."""
    new_model, new_size = 'espnet_p2q3_cityscapes', (320, 160)
    assert parameters({'output_resolution': 'network'})[0].successful
    labels = probe.record(Image, '/segmentation/labels')
    table = probe.record(String, '/segmentation/classes', LATCHED)
    send = frame_sender(publishers, camera)
    # 20 Hz, so that even a quick reload has frames sent while it runs.
    timer = probe.node.create_timer(0.05, lambda: send(time.time_ns()))
    try:
        probe.spin_until(lambda: labels.messages, 60.0, 'labels before the reload')
        requested = time.time_ns()
        answer = parameters.start({'model': new_model, 'input_width': new_size[0],
                                   'input_height': new_size[1]})
        probe.spin_until(answer.done, 120.0, 'the reload')
        swapped = time.time_ns()
        assert answer.result().result.successful, answer.result().result.reason
        probe.spin_until(lambda: [m for _, m in labels.messages
                                  if stamp_ns(m.header) > swapped], 60.0, 'labels after')
        probe.spin_until(lambda: json.loads(table.messages[-1][1].data)['model'] == new_model,
                         10.0, 'the new class table')
    finally:
        probe.node.destroy_timer(timer)
        probe.forget([labels, table])
    sizes = [((m.width, m.height), stamp_ns(m.header)) for _, m in labels.messages]
    assert [size for size, stamp in sizes if stamp < requested][-1] == NETWORK_SIZE
    # Frames sent during the reload: the old engine's, then the new one's, never mixed.
    during = [size for size, stamp in sizes if requested < stamp < swapped]
    switch = during.index(new_size) if new_size in during else len(during)
    assert switch >= 1 and set(during[:switch]) == {NETWORK_SIZE}, during
    assert set(during[switch:] + [size for size, stamp in sizes if stamp > swapped]) == {
        new_size}
