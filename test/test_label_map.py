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

"""Label maps without ROS: the file's checks, the published table, the engine, the commands."""

import json
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
from torch import nn
import yaml

from espnet_ros.cli import main as cli_main
from espnet_ros.imaging.cloud import build_cloud, select_label
from espnet_ros.imaging.outputs import class_cloud_topic, OUTPUT_TOPICS, points_groups_error
from espnet_ros.runtime.engine import EngineConfig, SegmentationEngine
from espnet_ros.runtime.options import Output
from espnet_ros.streaming.clouds import label_colours
from espnet_ros.zoo.label_map import (LabelMapError, load_for_dataset, MAX_PUBLISHED_CLASSES,
                                      parse_label_map, read_label_map)
from espnet_ros.zoo.registry import class_table, get_spec
from espnet_ros.zoo.user_files import UserFileError

MODEL = 'espnet_p2q8_cityscapes'
GROUPS_FILE = Path(__file__).resolve().parents[1] / 'config' / 'cityscapes_groups.yaml'
SPEC = get_spec(MODEL)
CLASSES = SPEC.dataset.classes
NETWORK_SIZE = (512, 256)
# Float32 sums of up to 20 probabilities against the engine's own.
PROBABILITY_TOLERANCE = 1e-5

GOOD = """\
groups:
  - {name: ground, color: [128, 64, 128], members: [road, sidewalk, terrain]}
  - {name: person, color: [220, 20, 60], members: [person, rider]}
"""

# Each bad file, and words its refusal must hold (besides the file's path).
BAD_FILES = {
    'unknown class': ('groups:\n  - {name: ground, color: [1, 2, 3], members: [road, lawn]}\n',
                      ["line 2, group 0 ('ground')", "unknown class 'lawn'", 'road, sidewalk']),
    'class in two groups': (
        'groups:\n  - {name: ground, color: [1, 2, 3], members: [road]}\n'
        '  - {name: street, color: [1, 2, 4], members: [sidewalk, road]}\n',
        ["line 3, group 1 ('street')", "class 'road' is already in group 'ground'"]),
    'empty group': ('groups:\n  - {name: ground, color: [1, 2, 3], members: []}\n',
                    ["group 0 ('ground')", 'the group is empty']),
    'duplicate names': ('groups:\n  - {name: ground, color: [1, 2, 3], members: [road]}\n'
                        '  - {name: ground, color: [1, 2, 3], members: [sidewalk]}\n',
                        ["group 1 ('ground')", "a second group named 'ground'"]),
    'colour out of range': ('groups:\n  - {name: ground, color: [1, 256, 3], members: [road]}'
                            '\n', ["group 0 ('ground')", 'out of range', '0-255']),
    'colour not RGB': ('groups:\n  - {name: ground, color: [1, 2], members: [road]}\n',
                       ["group 0 ('ground')", 'three integers']),
    'ignore value of a group': ('groups:\n  - {name: ground, color: [1, 2, 3], members: [road]}'
                                '\nignore_value: 0\n', ['ignore_value', "group 'ground'"]),
    'unknown unlisted': ('groups:\n  - {name: g, color: [1, 2, 3], members: [road]}\n'
                         'unlisted: drop\n', ['unlisted', 'ignore, keep']),
    'no groups': ('unlisted: keep\n', ['groups', 'non-empty list']),
    'unknown key': ('groups:\n  - {name: g, colour: [1, 2, 3], members: [road]}\n',
                    ["group 0 ('g')", 'unknown keys colour']),
    'not YAML': ('groups: [\n', ['not a YAML document']),
}


def write(tmp_path: Path, text: str, name: str = 'groups.yaml') -> Path:
    """Write ``text`` to a file of ``tmp_path``; return its path."""
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_cityscapes_example_is_the_issue_s_groups() -> None:
    label_map = load_for_dataset(GROUPS_FILE, SPEC.dataset)
    assert label_map.names == ('ground', 'obstacle', 'person')
    lookup = label_map.lookup()
    by_name = dict(zip(CLASSES, lookup))
    assert [by_name[c] for c in ('road', 'sidewalk', 'terrain')] == [0, 0, 0]
    assert [by_name[c] for c in ('car', 'building', 'bicycle')] == [1, 1, 1]
    assert [by_name[c] for c in ('person', 'rider')] == [2, 2]
    assert [by_name[c] for c in ('sky', 'unlabeled')] == [255, 255]
    assert label_map.table()[-1] == ('255', 'ignore', 'sky, unlabeled')


def test_class_table_lists_the_groups_and_the_ignore_value() -> None:
    label_map = load_for_dataset(GROUPS_FILE, SPEC.dataset)
    table = class_table(SPEC.__class__(**{**SPEC.__dict__,
                                          'dataset': label_map.dataset(SPEC.dataset)}))
    assert [(c['id'], c['name']) for c in table['classes']] == [
        (0, 'ground'), (1, 'obstacle'), (2, 'person'), (255, 'ignore')]
    assert table['classes'][0]['color'] == [128, 64, 128]
    assert table['void_class'] == 255


def test_keep_publishes_unlisted_classes_after_the_groups(tmp_path: Path) -> None:
    label_map = read_label_map(write(tmp_path, GOOD + 'unlisted: keep\n'), CLASSES,
                               SPEC.dataset.palette)
    kept = [c for c in CLASSES if c not in ('road', 'sidewalk', 'terrain', 'person', 'rider')]
    assert label_map.names == ('ground', 'person', *kept)
    assert label_map.ignored == ()
    lookup = label_map.lookup()
    assert lookup[CLASSES.index('sky')] == 2 + kept.index('sky')
    assert label_map.groups[2 + kept.index('sky')].color == tuple(
        int(c) for c in SPEC.dataset.palette[CLASSES.index('sky')])


def test_keep_refuses_a_group_named_like_a_kept_class(tmp_path: Path) -> None:
    text = 'groups:\n  - {name: car, color: [1, 2, 3], members: [truck]}\nunlisted: keep\n'
    path = write(tmp_path, text)
    with pytest.raises(LabelMapError, match="class 'car'.*names must be unique"):
        read_label_map(path, CLASSES, SPEC.dataset.palette)


@pytest.mark.parametrize('case', sorted(BAD_FILES))
def test_bad_file_refused_naming_file_group_and_expectation(case: str, tmp_path: Path) -> None:
    text, words = BAD_FILES[case]
    path = write(tmp_path, text)
    with pytest.raises(UserFileError) as raised:
        read_label_map(path, CLASSES)
    message = str(raised.value)
    assert message.startswith(str(path)), message
    for word in words:
        assert word in message, (word, message)


def test_more_groups_than_uint8_labels_hold_is_refused() -> None:
    classes = tuple(f'c{index}' for index in range(MAX_PUBLISHED_CLASSES + 1))
    document = {'groups': [{'name': name, 'color': [0, 0, 0], 'members': [name]}
                           for name in classes]}
    with pytest.raises(LabelMapError, match='256 published classes; at most 255'):
        parse_label_map(document, 'many.yaml', classes)
    document['groups'].pop()
    assert len(parse_label_map(document, 'many.yaml', classes).groups) == 255


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserFileError, match=r'absent\.yaml: cannot read it'):
        read_label_map(tmp_path / 'absent.yaml', CLASSES)


@pytest.fixture(scope='module')
def engine(pretrained: Callable[[str], nn.Module]) -> SegmentationEngine:
    """Return an eager fp32 engine of the Cityscapes model at a small network size."""
    return SegmentationEngine(SPEC, pretrained(MODEL), EngineConfig(input_size=NETWORK_SIZE))


def test_engine_groups_labels_and_sums_member_probabilities(engine: SegmentationEngine,
                                                            street_bgr: np.ndarray) -> None:
    label_map = load_for_dataset(GROUPS_FILE, SPEC.dataset)
    lookup = label_map.lookup()
    image = np.ascontiguousarray(street_bgr[:, :, ::-1])
    try:
        engine.use_label_map(None)
        batch = engine.preprocess([image])
        plain = engine.segment(image)
        probabilities = engine.infer(batch).float().softmax(1)[0].numpy()
        engine.use_label_map(label_map)
        grouped = engine.segment(image, with_confidence=True)
        labels_only = engine.segment(image)
        labels, confidence = engine.labels_and_confidence(batch, with_confidence=True)
    finally:
        engine.use_label_map(None)
    # Camera resolution: the ungrouped labels mapped through the groups, with or without
    # confidence asked for.
    np.testing.assert_array_equal(grouped.labels, lookup[plain.labels])
    np.testing.assert_array_equal(labels_only.labels, grouped.labels)
    assert set(np.unique(grouped.labels)) <= {0, 1, 2, 255}
    assert len(np.unique(grouped.labels)) >= 3, 'the street shows ground, obstacles, sky'
    # Network resolution: each pixel's confidence is its group's summed probability.
    expected = np.zeros(labels.shape[1:], np.float32)
    for published in np.unique(labels[0]):
        members = np.flatnonzero(lookup == published)
        where = labels[0] == published
        expected[where] = probabilities[members].sum(0)[where]
    np.testing.assert_array_equal(labels[0], lookup[probabilities.argmax(0)])
    assert np.abs(confidence[0] - expected).max() <= PROBABILITY_TOLERANCE
    assert engine.published_spec.dataset.classes == CLASSES


def test_engine_refuses_a_map_for_other_classes(engine: SegmentationEngine,
                                                tmp_path: Path) -> None:
    camvid = get_spec('espnet_p2q8_camvid').dataset
    text = 'groups:\n  - {name: g, color: [1, 2, 3], members: [pavement]}\n'
    label_map = read_label_map(write(tmp_path, text), camvid.classes)
    with pytest.raises(ValueError, match='not those of espnet_p2q8_cityscapes'):
        engine.use_label_map(label_map)


def test_models_prints_the_published_table(capsys: pytest.CaptureFixture) -> None:
    assert cli_main(['models', MODEL, '--label-map', str(GROUPS_FILE)]) == 0
    out = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(out) if line.startswith('published with'))
    rows = [line.split(None, 3) for line in out[start + 2:]]
    assert [row[:2] for row in rows] == [['0', 'ground'], ['1', 'obstacle'], ['2', 'person'],
                                         ['255', 'ignore']]
    assert out[start + 2].split()[2:] == ['128', '64', '128', 'road,', 'sidewalk,', 'terrain']
    assert out[-1].split()[-2:] == ['sky,', 'unlabeled']


def test_models_refuses_a_bad_map_with_its_reason(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    path = write(tmp_path, BAD_FILES['class in two groups'][0])
    assert cli_main(['models', MODEL, '--label-map', str(path)]) == 2
    error = capsys.readouterr().err
    assert str(path) in error and "class 'road' is already in group 'ground'" in error


def test_segment_writes_grouped_labels_and_colours(tmp_path: Path, cityscapes_image: Path,
                                                   weights_dir: Path) -> None:
    (tmp_path / 'in').mkdir()
    (tmp_path / 'in' / cityscapes_image.name).symlink_to(cityscapes_image)
    common = ['--model', MODEL, '--device', 'cpu', '--size', 'x'.join(map(str, NETWORK_SIZE)),
              '--weights-dir', str(weights_dir), str(tmp_path / 'in')]
    assert cli_main(['segment', *common, '--out', str(tmp_path / 'plain')]) == 0
    assert cli_main(['segment', *common, '--out', str(tmp_path / 'grouped'),
                     '--label-map', str(GROUPS_FILE)]) == 0
    label_map = load_for_dataset(GROUPS_FILE, SPEC.dataset)
    name = f'{cityscapes_image.stem}_labels.png'
    plain = cv2.imread(str(tmp_path / 'plain' / name), cv2.IMREAD_UNCHANGED)
    grouped = cv2.imread(str(tmp_path / 'grouped' / name), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(grouped, label_map.lookup()[plain])
    color = cv2.imread(str(tmp_path / 'grouped' / f'{cityscapes_image.stem}_color.png'))
    palette = np.zeros((256, 3), np.uint8)
    palette[:len(label_map.groups)] = label_map.palette
    np.testing.assert_array_equal(color[..., ::-1], palette[grouped])


def test_select_label_keeps_the_valid_points_of_one_label_in_order() -> None:
    labels = np.array([[0, 1, 1], [1, 2, 1]], np.uint8)
    depth = np.array([[1.0, 2.0, 0.0], [3.0, 4.0, np.nan]], np.float32)
    k = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    cloud = build_cloud(labels, depth, k, label_rgb=label_colours([[1, 2, 3]] * 3))
    ones = select_label(cloud, 1)
    assert (ones.height, ones.width, ones.valid) == (1, 2, 2) and ones.is_dense
    points = ones.points()[0]
    np.testing.assert_array_equal(points['z'], [2.0, 3.0])  # row-major; NaN and 0 left out
    assert (points['label'] == 1).all() and ones.dtype == cloud.dtype
    empty = select_label(cloud, 7)
    assert (empty.height, empty.width, len(empty.data)) == (1, 0, 0)


def test_points_groups_names_need_topics_of_their_own() -> None:
    assert class_cloud_topic('traffic light') == 'segmentation/points/traffic_light'
    assert points_groups_error(('obstacle', 'person')) is None
    assert 'share the topic' in points_groups_error(('traffic light', 'traffic_light'))
    assert 'expected class or group names' in points_groups_error(('',))
    assert 'not a published class' in points_groups_error(('lawn',), ('ground', 'obstacle'))


def test_nav2_example_reads_the_groups_and_the_obstacle_cloud() -> None:
    """config/nav2_label_groups.yaml: every published class once, the segmenter's topics."""
    config = yaml.safe_load((GROUPS_FILE.parent / 'nav2_label_groups.yaml').read_text())
    layers = config['local_costmap']['local_costmap']['ros__parameters']
    semantic = layers['semantic_segmentation_layer']
    camera = semantic[semantic['observation_sources']]
    listed = [name for kind in camera['class_types'] for name in camera[kind]['classes']]
    published = class_table(SPEC.__class__(**{
        **SPEC.__dict__, 'dataset': load_for_dataset(GROUPS_FILE, SPEC.dataset).dataset(
            SPEC.dataset)}))['classes']
    assert sorted(listed) == sorted(entry['name'] for entry in published)
    assert camera['segmentation_topic'].endswith(OUTPUT_TOPICS[Output.LABELS])
    assert camera['pointcloud_topic'].endswith(OUTPUT_TOPICS[Output.POINTS])
    voxel = layers['voxel_layer']
    source = voxel[voxel['observation_sources']]
    assert source['topic'].endswith(class_cloud_topic('obstacle'))
    assert source['data_type'] == 'PointCloud2'
    assert layers['plugins'][:2] == ['voxel_layer', 'semantic_segmentation_layer']


def test_bench_groups_writes_a_row_per_size(tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / 'groups.json'
    assert cli_main(['bench-groups', '--size', '64x32', '--size', '128x64', '--repeats', '1',
                     '--warmup', '0', '--json', str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [row['size'] for row in rows] == ['64x32', '128x64']
    for row in rows:
        assert row['groups'] == 3 and row['classes'] == len(CLASSES)
        assert 0 < row['class_points'] <= row['points']
        assert all(row[f'{name}_median_ms'] > 0 for name in (
            'labels', 'grouped_labels', 'confidence', 'grouped_confidence', 'cloud',
            'class_cloud'))
    assert 'class cloud' in capsys.readouterr().out
