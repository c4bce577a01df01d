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
Label groups and per-class clouds through the node over real DDS.

The segmenter runs with config/cityscapes_groups.yaml and ``points_groups: [obstacle]`` on
the Cityscapes street scene, at the network's own size (no resizing, so every pixel can be
checked), with a registered depth camera that sees a known flat world. Its labels must be
the ungrouped labels mapped through the groups, its confidence the summed probability of
the published group's members, LabelInfo must list the groups and the ignore value, the
cloud's label field must be the grouped labels, and ``segmentation/points/obstacle`` must
hold exactly the valid obstacle points where back-projection puts them. Every bad label map
is refused with its reason while the node goes on serving the previous one.
"""

from pathlib import Path
from typing import Any, Iterator

from builtin_interfaces.msg import Time
import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_helpers import (camera_image, depth_segmenter, header_at, image_array,
                         input_publishers, NodeProcess, Probe, send_until_answered,
                         stamp_ns)
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from sensor_msgs_py.point_cloud2 import read_points, read_points_numpy
from std_msgs.msg import Header
from torch import nn

from espnet_ros.imaging.files import camera_rgb
from espnet_ros.ros.launching import LaunchArgumentError, parse_parameter
from espnet_ros.ros.parameter_table import BY_NAME
from espnet_ros.runtime.engine import EngineConfig, SegmentationEngine
from espnet_ros.tools.depth_scenes import flat_world, pinhole_k
from espnet_ros.zoo.label_map import load_for_dataset
from espnet_ros.zoo.registry import get_spec

MODEL = 'espnet_p2q8_cityscapes'
SPEC = get_spec(MODEL)
GROUPS_FILE = Path(__file__).resolve().parents[1] / 'config' / 'cityscapes_groups.yaml'
NAMESPACE = '/grouped'
NODE = f'{NAMESPACE}/segmenter'
FRAME_ID = 'front_camera_optical'
SIZE = (512, 256)  # camera and network alike: the outputs are the network's own pixels
OBSTACLE = 'obstacle'
CAMERA_HEIGHT_M, FACADE_M, MAX_DEPTH_M = 1.5, 8.0, 10.0
HOLE = (slice(90, 110), slice(0, SIZE[0]))  # rows without a depth measurement
MM = 1e-3
# The node's float32 softmax sums against the test's, on another thread count.
PROBABILITY_TOLERANCE = 1e-5
# Waits, not figures: safety nets for a heavily loaded machine.
OUTPUTS_TIMEOUT_S, LATCHED_TIMEOUT_S, START_WAIT_S = 300.0, 60.0, 300.0
K = pinhole_k(SIZE, horizontal_fov_deg=90.0)
TOPICS = {'image': '/grouped_cam/image_raw', 'camera_info': '/grouped_cam/camera_info',
          'depth/image': '/grouped_cam/depth/image_raw',
          'depth/camera_info': '/grouped_cam/depth/camera_info'}
OUT = f'{NAMESPACE}/segmentation'
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
NODE_PARAMETERS = {'model': MODEL, 'input_width': SIZE[0], 'input_height': SIZE[1],
                   'device': 'cpu', 'precision': 'fp32', 'publish_points': True,
                   'publish_confidence': True, 'max_depth': MAX_DEPTH_M,
                   'publish_color': False, 'publish_overlay': False,
                   'label_map': str(GROUPS_FILE), 'points_groups': [OBSTACLE]}

# Bad label maps and words their refusal holds (besides the file's path).
BAD_FILES = {
    'unknown class': ('groups:\n  - {name: ground, color: [1, 2, 3], members: [road, lawn]}\n',
                      "unknown class 'lawn'"),
    'class in two groups': ('groups:\n  - {name: a, color: [1, 2, 3], members: [road]}\n'
                            '  - {name: b, color: [1, 2, 3], members: [road]}\n',
                            "class 'road' is already in group 'a'"),
    'empty group': ('groups:\n  - {name: ground, color: [1, 2, 3], members: []}\n',
                    'the group is empty'),
    'duplicate names': ('groups:\n  - {name: a, color: [1, 2, 3], members: [road]}\n'
                        '  - {name: a, color: [1, 2, 3], members: [sidewalk]}\n',
                        "a second group named 'a'"),
    'too many groups': ('groups:\n' + ''.join(
        f'  - {{name: g{index}, color: [1, 2, 3], members: [road]}}\n' for index in range(256)),
        'published classes; at most 255'),
    'colour out of range': ('groups:\n  - {name: a, color: [1, 2, 300], members: [road]}\n',
                            'out of range'),
}


@pytest.fixture(scope='module')
def street_rgb(street_bgr: np.ndarray) -> np.ndarray:
    """Return the Cityscapes street at the network's size, RGB."""
    return camera_rgb(street_bgr, SIZE)


@pytest.fixture(scope='module')
def segmenter(probe: Probe, weights_dir: Path,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """Start the node with the Cityscapes groups and the obstacle cloud."""
    with depth_segmenter(probe, NODE_PARAMETERS, TOPICS, weights_dir=weights_dir,
                         namespace=NAMESPACE,
                         log_dir=tmp_path_factory.mktemp('label_groups')) as node:
        yield node


@pytest.fixture(scope='module')
def publishers(probe: Probe) -> dict[str, Any]:
    """Return the camera's and the depth camera's publishers."""
    return input_publishers(probe, TOPICS)


def scene_metres() -> np.ndarray:
    """Return the registered depth in metres: flat ground, a facade, a hole (0 = none)."""
    metres = flat_world(SIZE, K, CAMERA_HEIGHT_M, FACADE_M)
    metres[HOLE] = 0.0
    return metres


def expected_points(metres: np.ndarray) -> np.ndarray:
    """Back-project the millimetre depth pixel by pixel: H x W x 3, NaN where invalid."""
    z = np.rint(metres / MM) * MM
    v, u = np.mgrid[0:z.shape[0], 0:z.shape[1]]
    points = np.stack([(u - K[0, 2]) * z / K[0, 0], (v - K[1, 2]) * z / K[1, 1], z], axis=-1)
    points[(z <= 0) | (z > MAX_DEPTH_M)] = np.nan
    return points


def send_frame(probe: Probe, publishers: dict[str, Any], rgb: np.ndarray,
               recorders: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Send depth, its CameraInfo and the colour frame until every recorder has an output."""
    metres = scene_metres()

    def publish(stamp: int) -> None:
        header = header_at(stamp, FRAME_ID)
        depth = Image(header=Header(stamp=Time(sec=header.stamp.sec,
                                               nanosec=header.stamp.nanosec),
                                    frame_id=FRAME_ID),
                      height=SIZE[1], width=SIZE[0], encoding='16UC1', is_bigendian=False,
                      step=SIZE[0] * 2)
        depth.data = np.rint(metres / MM).astype('<u2').tobytes()
        publishers['depth/image'].publish(depth)
        publishers['depth/camera_info'].publish(CameraInfo(
            header=header, width=SIZE[0], height=SIZE[1], k=K.reshape(-1).tolist()))
        publishers['image'].publish(camera_image(rgb, 'rgb8', header))

    try:
        return send_until_answered(probe, publish, recorders, timeout_s=OUTPUTS_TIMEOUT_S)
    finally:
        probe.forget(recorders.values())


@pytest.fixture(scope='module')
def grouped(probe: Probe, segmenter: NodeProcess, publishers: dict[str, Any],
            street_rgb: np.ndarray) -> dict[str, Any]:
    """Return one frame's grouped labels, confidence, cloud and obstacle cloud."""
    recorders = {'labels': probe.record(Image, f'{OUT}/labels'),
                 'confidence': probe.record(Image, f'{OUT}/confidence'),
                 'points': probe.record(PointCloud2, f'{OUT}/points'),
                 OBSTACLE: probe.record(PointCloud2, f'{OUT}/points/{OBSTACLE}')}
    _, out = send_frame(probe, publishers, street_rgb, recorders)
    return out


@pytest.fixture(scope='module')
def probabilities(pretrained: Any, street_rgb: np.ndarray) -> np.ndarray:
    """Return C x H x W softmax probabilities of the model's classes, ungrouped."""
    network: nn.Module = pretrained(MODEL)
    engine = SegmentationEngine(SPEC, network, EngineConfig(input_size=SIZE))
    logits = engine.infer(engine.preprocess([street_rgb]))
    return logits.float().softmax(1)[0].numpy()


def test_labels_and_confidence_are_the_groups(grouped: dict[str, Any],
                                              probabilities: np.ndarray) -> None:
    lookup = load_for_dataset(GROUPS_FILE, SPEC.dataset).lookup()
    labels = image_array(grouped['labels'])
    assert labels.shape == SIZE[::-1]
    assert set(np.unique(labels)) <= {0, 1, 2, 255} and len(np.unique(labels)) >= 3
    # Most pixels: the test's own ungrouped labels mapped through the groups (the exact
    # comparison, against the node's own ungrouped labels, is the reload test's).
    assert (labels == lookup[probabilities.argmax(0)]).mean() > 0.999
    confidence = image_array(grouped['confidence'])
    assert grouped['confidence'].encoding == '32FC1'
    expected = np.zeros(labels.shape, np.float32)
    for published in np.unique(labels):
        where = labels == published
        expected[where] = probabilities[lookup == published].sum(0)[where]
    assert np.abs(confidence - expected).max() <= PROBABILITY_TOLERANCE


def test_cloud_label_field_is_the_grouped_labels(grouped: dict[str, Any]) -> None:
    cloud, labels = grouped['points'], image_array(grouped['labels'])
    assert (cloud.height, cloud.width) == labels.shape
    label_field = read_points(cloud, field_names=['label'])['label'].reshape(labels.shape)
    np.testing.assert_array_equal(label_field, labels)


def test_obstacle_cloud_holds_exactly_the_valid_obstacle_points(
        grouped: dict[str, Any]) -> None:
    cloud, obstacle = grouped['points'], grouped[OBSTACLE]
    labels = image_array(grouped['labels'])
    assert stamp_ns(obstacle.header) == stamp_ns(cloud.header)
    assert obstacle.header.frame_id == cloud.header.frame_id == FRAME_ID
    assert obstacle.height == 1 and obstacle.is_dense
    assert [f.name for f in obstacle.fields] == [f.name for f in cloud.fields]
    points = expected_points(scene_metres())
    chosen = (labels == 1) & np.isfinite(points[..., 2])  # obstacle is group 1
    assert chosen.sum() > 100 and (~chosen & (labels == 1)).any(), 'a real selection'
    assert obstacle.width == int(chosen.sum())
    xyz = read_points_numpy(obstacle, field_names=['x', 'y', 'z'])
    assert np.abs(xyz - points[chosen]).max() < MM  # row-major, point by point
    assert (read_points(obstacle, field_names=['label'])['label'] == 1).all()


def test_label_info_lists_the_groups_and_the_ignore_value(probe: Probe,
                                                          segmenter: NodeProcess) -> None:
    vision_msgs = pytest.importorskip('vision_msgs.msg',
                                      reason='vision_msgs is not installed')
    recorder = probe.record(vision_msgs.LabelInfo, f'{OUT}/label_info', LATCHED)
    try:
        probe.spin_until(lambda: recorder.messages, LATCHED_TIMEOUT_S, 'LabelInfo')
    finally:
        probe.forget([recorder])
    label_info = recorder.messages[-1][1]
    assert [(c.class_id, c.class_name) for c in label_info.class_map] == [
        (0, 'ground'), (1, 'obstacle'), (2, 'person'), (255, 'ignore')]


def test_points_groups_must_name_published_classes(probe: Probe,
                                                   segmenter: NodeProcess) -> None:
    result, = probe.set_parameters(NODE, {'points_groups': [OBSTACLE, 'car']})
    assert not result.successful
    assert "'car' is not a published class" in result.reason, result.reason
    assert 'ground, obstacle, person' in result.reason, result.reason
    assert probe.get_parameters(NODE, ['points_groups'])['points_groups'] == [OBSTACLE]


def test_bad_maps_refused_and_the_last_good_one_kept(
        probe: Probe, segmenter: NodeProcess, publishers: dict[str, Any],
        street_rgb: np.ndarray, grouped: dict[str, Any],
        tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp('bad_maps')
    for case, (text, words) in BAD_FILES.items():
        path = folder / f'{case.replace(" ", "_")}.yaml'
        path.write_text(text)
        result, = probe.set_parameters(NODE, {'label_map': str(path)})
        assert not result.successful, case
        assert str(path) in result.reason and words in result.reason, (case, result.reason)
    missing = folder / 'absent.yaml'
    result, = probe.set_parameters(NODE, {'label_map': str(missing)})
    assert not result.successful and f'{missing}: cannot read it' in result.reason
    assert probe.get_parameters(NODE, ['label_map'])['label_map'] == str(GROUPS_FILE)
    _, out = send_frame(probe, publishers, street_rgb,
                        {'labels': probe.record(Image, f'{OUT}/labels')})
    kept = image_array(out['labels'])
    np.testing.assert_array_equal(kept, image_array(grouped['labels']))

    # The same node without a map: its ungrouped labels, mapped through the groups, are
    # exactly the grouped ones.
    result, = probe.set_parameters(NODE, {'label_map': ''})
    assert result.successful, result.reason
    _, out = send_frame(probe, publishers, street_rgb,
                        {'labels': probe.record(Image, f'{OUT}/labels')})
    ungrouped = image_array(out['labels'])
    lookup = load_for_dataset(GROUPS_FILE, SPEC.dataset).lookup()
    assert ungrouped.max() > 2, "the model's own classes again"
    np.testing.assert_array_equal(lookup[ungrouped], kept)


def test_launch_arguments_give_points_groups_as_names() -> None:
    spec = BY_NAME['points_groups']
    assert parse_parameter(spec, '[obstacle, person]') == ('obstacle', 'person')
    assert parse_parameter(spec, 'obstacle') == ('obstacle',)
    assert parse_parameter(spec, '[]') == ()
    with pytest.raises(LaunchArgumentError, match='would share the topic'):
        parse_parameter(spec, '[traffic light, traffic_light]')


def test_a_bad_map_at_start_up_ends_the_node_saying_why(weights_dir: Path,
                                                        tmp_path: Path) -> None:
    """Refused at configure: the process exits with status 1, the log names file and group."""
    bad = tmp_path / 'bad.yaml'
    bad.write_text('groups:\n  - {name: a, color: [1, 2, 3], members: []}\n')
    node = NodeProcess('segmenter', {**NODE_PARAMETERS, 'label_map': str(bad)},
                       namespace='/bad_map', weights_dir=weights_dir, log_dir=tmp_path)
    try:
        status = node.process.wait(START_WAIT_S)
    finally:
        node.stop()
    assert status == 1, node.describe()
    assert 'cannot configure' in node.log(), node.log()
    assert f"{bad}: line 2, group 0 ('a'): the group is empty" in node.log(), node.log()
