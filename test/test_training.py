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
``espnet-ros train`` end to end on a handful of real CamVid frames at a small size.

One module-scoped fine-tune of ESPNet (p=2, q=8, Cityscapes) on four CamVid training frames
relabelled into the README's 3-class example table (``config/classes_example.yaml``: floor,
obstacle, person; void 255) feeds the checks: the
loss falls, the model folder's manifest holds the checkpoint's sha256, the model loads by
name in the engine, in ``espnet-ros models`` and in the node over real DDS, and a run
stopped after one epoch resumes to the same result as an uninterrupted one. Every bad
input of the issue fails with one line naming the file, and leaves no file behind.
"""

import json
import os
from pathlib import Path
import shutil

import cv2
import numpy as np
import pytest
import torch

from espnet_ros.cli import main as cli_main
from espnet_ros.training import classes
from espnet_ros.training.loop import class_dependent_modules, Trainer, TrainingError, \
    TrainingRun
from espnet_ros.training.model_folder import atomic_path, WriteError
from espnet_ros.training.recipe import AUTHORS_RECIPE
from espnet_ros.zoo import checkpoints, registry
from espnet_ros.zoo.registry import get_spec, ManifestError

BASE = 'espnet_p2q8_cityscapes'
NAME = 'corridor_bot'
SIZE = (128, 96)          # network input, a multiple of 8; the frames stay 480x360
TRAIN_FRAMES, VAL_FRAMES = 4, 2
EPOCHS = 3
# Fixed, as for any exact rerun: the other commands the tests run set the process's count.
THREADS = 2
CLASS_FILE = Path(__file__).resolve().parents[1] / 'config' / 'classes_example.yaml'
USER_CLASSES = ['floor', 'obstacle', 'person']
# CamVid label values: road 3, pavement 4, pedestrian 9, bicyclist 10, void 11.
FLOOR, OBSTACLE, PERSON, VOID = 0, 1, 2, 255
CAMVID_TO_USER = {3: FLOOR, 4: FLOOR, 9: PERSON, 10: PERSON, 11: VOID}


def relabel(camvid: np.ndarray) -> np.ndarray:
    """Return CamVid labels in the example table: anything not floor or person is obstacle."""
    out = np.full_like(camvid, OBSTACLE)
    for camvid_value, ours in CAMVID_TO_USER.items():
        out[camvid == camvid_value] = ours
    return out


def make_split(camvid_dir: Path, split: str, count: int, target: Path) -> tuple[Path, Path]:
    """Copy ``count`` frames of a CamVid split with 3-class labels; return (images, labels)."""
    images, labels = target / 'images', target / 'labels'
    images.mkdir(parents=True)
    labels.mkdir()
    for frame in sorted((camvid_dir / split).glob('*.png'))[:count]:
        shutil.copy(frame, images / frame.name)
        camvid = cv2.imread(str(camvid_dir / f'{split}annot' / frame.name),
                            cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(labels / frame.name), relabel(camvid))
    return images, labels


@pytest.fixture(scope='module')
def data(camvid_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Return the tiny train and val splits and the class file."""
    root = tmp_path_factory.mktemp('frames')
    train_images, train_labels = make_split(camvid_dir, 'train', TRAIN_FRAMES, root / 'train')
    val_images, val_labels = make_split(camvid_dir, 'val', VAL_FRAMES, root / 'val')
    return {'images': train_images, 'labels': train_labels, 'val_images': val_images,
            'val_labels': val_labels, 'classes': CLASS_FILE, 'root': root}


def train_args(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    """Return the ``espnet-ros train`` arguments of the tiny fine-tune."""
    return ['train', '--model', BASE, '--images', str(data['images']),
            '--labels', str(data['labels']), '--val-images', str(data['val_images']),
            '--val-labels', str(data['val_labels']), '--classes', str(data['classes']),
            '--name', NAME, '--out', str(out), '--input-size', '{}x{}'.format(*SIZE),
            '--batch', '2', '--seed', '7', '--threads', str(THREADS), '--device', 'cpu',
            '--no-progress', *extra]


@pytest.fixture(scope='module')
def trained(data: dict[str, Path], weights_dir: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the tiny fine-tune through the CLI; return the model folder."""
    out = tmp_path_factory.mktemp('models') / 'corridor'
    assert cli_main(train_args(data, out, '--epochs', str(EPOCHS))) == 0
    return out


@pytest.fixture
def user_models(trained: Path, weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the official weights and the trained model folder on $ESPNET_ROS_MODELS."""
    monkeypatch.setenv(checkpoints.MODELS_ENV, f'{weights_dir}{os.pathsep}{trained}')
    return trained


def history(out: Path) -> list[dict]:
    """Return the per-epoch records a run wrote."""
    return json.loads((out / f'{NAME}.training' / 'history.json').read_text())['history']


def test_loss_falls_and_the_model_folder_is_complete(trained: Path) -> None:
    records = history(trained)
    assert [r['epoch'] for r in records] == list(range(1, EPOCHS + 1))
    assert records[-1]['loss'] < records[0]['loss'], records
    assert all(0.0 <= r['val_miou'] <= 1.0 for r in records)
    manifest = json.loads((trained / registry.MANIFEST).read_text())
    (entry,) = manifest['models']
    checkpoint = trained / entry['checkpoint']
    assert entry['sha256'] == checkpoints.sha256_of(checkpoint)
    best = max(records, key=lambda r: r['val_miou'])
    assert entry['val_miou']['epoch'] == best['epoch']
    assert entry['val_miou']['miou'] == round(100 * best['val_miou'], 2)
    assert entry['val_miou']['protocol'] == 'ignore-void'
    assert entry['base'] == BASE and entry['input_size'] == list(SIZE)
    assert manifest['datasets'][entry['dataset']]['classes'] == USER_CLASSES
    assert manifest['datasets'][entry['dataset']]['void_class'] == VOID
    official = get_spec(BASE).normalization
    assert manifest['normalizations'][entry['normalization']]['mean'] == list(official.mean)
    state = torch.load(checkpoint, map_location='cpu', weights_only=True)
    assert state['classifier.weight'].shape[1] == 3  # a transposed conv: C_in x C_out
    assert (trained / f'{NAME}.training' / 'curve.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert not list(trained.rglob('*.partial')), 'a temporary file was left behind'


def test_the_model_runs_by_name_in_the_engine_and_the_cli(
        user_models: Path, data: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    from espnet_ros.runtime.engine import SegmentationEngine

    spec = get_spec(NAME)
    assert spec.source == registry.USER and spec.folder == user_models
    engine = SegmentationEngine.from_pretrained(NAME, device='cpu', precision='fp32')
    assert engine.input_size == SIZE
    frame = cv2.imread(str(next(data['val_images'].iterdir())))
    labels = engine.segment(frame, order='bgr').labels
    assert labels.shape == frame.shape[:2] and labels.max() <= 2
    assert registry.class_table(spec)['classes'][0] == {'id': 0, 'name': 'floor',
                                                        'color': [128, 64, 128]}
    assert cli_main(['models']) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith(NAME))
    assert ' user ' in line and 'verified' in line
    scores = data['root'] / 'scores.json'
    assert cli_main(['eval', '--model', NAME, '--images', str(data['val_images']),
                     '--labels', str(data['val_labels']), '--json', str(scores)]) == 0
    assert json.loads(scores.read_text())['void_class'] == VOID


def test_the_registry_option_adds_a_model_folder(trained: Path, weights_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv(checkpoints.MODELS_ENV, str(weights_dir))
    assert NAME not in registry.registry()
    assert cli_main(['--registry', str(trained), 'models']) == 0
    assert any(row.startswith(f'{NAME} ') for row in capsys.readouterr().out.splitlines())


def test_a_tampered_user_checkpoint_is_refused(user_models: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / 'copy'
    shutil.copytree(user_models, copy)
    checkpoint = copy / f'{NAME}.pth'
    checkpoint.write_bytes(checkpoint.read_bytes()[:-10])
    monkeypatch.setenv(checkpoints.MODELS_ENV, str(copy))
    with pytest.raises(checkpoints.CheckpointError, match=f'{checkpoint}.*sha256'):
        registry.load(NAME)


def test_resume_continues_where_it_stopped(data: dict[str, Path], trained: Path,
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / 'resumed'
    train_epoch = Trainer.train_epoch

    def stopped_in_the_last_epoch(trainer: Trainer, epoch: int):
        if epoch == EPOCHS:
            raise KeyboardInterrupt  # Ctrl-C
        return train_epoch(trainer, epoch)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, 'train_epoch', stopped_in_the_last_epoch)
        assert cli_main(train_args(data, out, '--epochs', str(EPOCHS))) == 130
    assert '--resume' in capsys.readouterr().out
    assert [r['epoch'] for r in history(out)] == list(range(1, EPOCHS))
    assert cli_main(train_args(data, out, '--epochs', str(EPOCHS), '--resume')) == 0
    resumed, straight = history(out), history(trained)
    assert [r['epoch'] for r in resumed] == list(range(1, EPOCHS + 1))
    # Seeded per epoch and restored with the optimiser: the same run as without a stop.
    for mine, theirs in zip(resumed, straight):
        assert mine['loss'] == pytest.approx(theirs['loss'], rel=1e-4), (resumed, straight)
    # Without --resume an existing run is not overwritten.
    assert cli_main(train_args(data, out, '--epochs', '1')) == 2


def test_resume_refuses_the_state_of_another_model(data: dict[str, Path], trained: Path,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / 'other'
    shutil.copytree(trained, out)
    capsys.readouterr()
    assert cli_main(train_args(data, out, '--epochs', '6', '--resume', '--input-size',
                               '64x48')) == 2
    error = capsys.readouterr().err.strip()
    assert error.count('\n') == 0 and 'state.pt' in error and 'another model' in error


def test_same_classes_keep_every_layer_and_others_reset_the_head() -> None:
    base = get_spec(BASE)
    fresh = class_dependent_modules(base, 12)
    assert {'classifier', 'encoder.classifier', 'level2_merge.reduce'} <= fresh
    assert not any(m.startswith(('encoder.stage', 'encoder.stem')) for m in fresh), fresh
    # Fewer classes than the ESP module's branches: the base's decoder is kept whole.
    assert class_dependent_modules(base, 3) == {'classifier'}
    table = classes.from_dataset(base.dataset)
    assert table.same_as(base.dataset)


def test_class_weights_are_the_authors() -> None:
    weights = AUTHORS_RECIPE.class_weights(np.array([90, 10, 0]))
    assert weights == pytest.approx(1 / np.log(1.10 + np.array([0.9, 0.1, 0.0])))
    assert AUTHORS_RECIPE.lr_factor(0.0) == 1.0 and AUTHORS_RECIPE.lr_factor(0.5) == 0.5
    assert AUTHORS_RECIPE.lr_factor(0.99) == 0.25


def test_registry_dataset_names_give_their_tables() -> None:
    camvid = classes.load_class_table('camvid')
    assert camvid.num_classes == 12 and camvid.void == 11
    assert classes.load_class_table('pascal').num_classes == 21


# --- bad input: one line naming the file, nothing left behind ------------------------------

@pytest.fixture
def broken(data: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """Return a private copy of the training split to break."""
    images, labels = tmp_path / 'images', tmp_path / 'labels'
    shutil.copytree(data['images'], images)
    shutil.copytree(data['labels'], labels)
    return {**data, 'images': images, 'labels': labels, 'tmp': tmp_path}


def fails(args: list[str], capsys: pytest.CaptureFixture, *expected: str) -> str:
    """Run the CLI, expect status 2 and a one-line error holding every ``expected``."""
    capsys.readouterr()
    assert cli_main(args) == 2
    error = capsys.readouterr().err.strip()
    assert error.count('\n') == 0, error
    for part in expected:
        assert part in error, error
    return error


def test_image_without_label(broken: dict, capsys: pytest.CaptureFixture) -> None:
    victim = sorted(broken['labels'].iterdir())[0]
    victim.unlink()
    out = broken['tmp'] / 'out'
    fails(train_args(broken, out, '--epochs', '1'), capsys,
          str(broken['images'] / victim.name), 'no label')
    assert not out.exists()


def test_label_without_image(broken: dict, capsys: pytest.CaptureFixture) -> None:
    victim = sorted(broken['images'].iterdir())[0]
    victim.unlink()
    fails(train_args(broken, broken['tmp'] / 'out', '--epochs', '1'), capsys,
          str(broken['labels'] / victim.name), 'no image')


def test_label_value_outside_the_class_table(broken: dict,
                                             capsys: pytest.CaptureFixture) -> None:
    victim = sorted(broken['labels'].iterdir())[1]
    label = cv2.imread(str(victim), cv2.IMREAD_UNCHANGED)
    label[0, 0] = 7
    cv2.imwrite(str(victim), label)
    fails(train_args(broken, broken['tmp'] / 'out', '--epochs', '1'), capsys,
          str(victim), '[7]', 'not in the class table')


def test_label_of_another_size_than_its_image(broken: dict,
                                              capsys: pytest.CaptureFixture) -> None:
    victim = sorted(broken['labels'].iterdir())[3]
    cv2.imwrite(str(victim), cv2.imread(str(victim), cv2.IMREAD_UNCHANGED)[:100])
    fails(train_args(broken, broken['tmp'] / 'out', '--epochs', '1'), capsys,
          str(victim), 'label is 480x100')


def test_images_of_mixed_sizes(broken: dict, capsys: pytest.CaptureFixture) -> None:
    victim = sorted(broken['images'].iterdir())[2]
    cv2.imwrite(str(victim), cv2.resize(cv2.imread(str(victim)), (240, 180)))
    fails(train_args(broken, broken['tmp'] / 'out', '--epochs', '1'), capsys,
          str(victim), '240x180', '480x360')


def test_empty_folder(broken: dict, capsys: pytest.CaptureFixture) -> None:
    empty = broken['tmp'] / 'empty'
    empty.mkdir()
    fails(train_args({**broken, 'images': empty}, broken['tmp'] / 'out', '--epochs', '1'),
          capsys, str(empty), 'no images')


@pytest.mark.parametrize('text,expected', [
    ('classes: [road, sky', 'does not parse'),
    ('classes: []', 'non-empty list'),
    ('classes:\n  - {name: road, color: [300, 0, 0]}', 'colour'),
    ('classes:\n  - {name: road, color: [1, 2, 3]}\nvoid: -1', 'void'),
])
def test_class_file_that_does_not_parse(broken: dict, capsys: pytest.CaptureFixture,
                                        text: str, expected: str) -> None:
    class_file = broken['tmp'] / 'bad.yaml'
    class_file.write_text(text)
    fails(train_args({**broken, 'classes': class_file}, broken['tmp'] / 'out', '--epochs', '1'),
          capsys, str(class_file), expected)


def test_json_class_file_and_missing_file(broken: dict, capsys: pytest.CaptureFixture) -> None:
    class_file = broken['tmp'] / 'classes.json'
    class_file.write_text('{"classes": [{"name": "road", "color": [1, 2, 3]}], "void": 255,}')
    fails(train_args({**broken, 'classes': class_file}, broken['tmp'] / 'out', '--epochs', '1'),
          capsys, str(class_file), 'does not parse')
    missing = broken['tmp'] / 'nowhere.yaml'
    fails(train_args({**broken, 'classes': missing}, broken['tmp'] / 'out', '--epochs', '1'),
          capsys, str(missing), 'no such class file')


def test_base_that_does_not_exist(broken: dict, capsys: pytest.CaptureFixture) -> None:
    args = train_args(broken, broken['tmp'] / 'out', '--epochs', '1')
    args[args.index(BASE)] = 'espnet_p9q9_mars'
    fails(args, capsys, 'espnet_p9q9_mars', 'unknown model')


@pytest.mark.parametrize('name,expected', [('../escape', 'letters, digits'),
                                           (BASE, 'is an official model')])
def test_a_name_that_cannot_be_a_model(broken: dict, capsys: pytest.CaptureFixture,
                                       name: str, expected: str) -> None:
    args = train_args(broken, broken['tmp'] / 'out', '--epochs', '1')
    args[args.index(NAME)] = name
    fails(args, capsys, expected)
    assert not (broken['tmp'] / 'out').exists()


def test_a_full_disk_leaves_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / 'manifest.json'
    target.write_text('good')
    with pytest.raises(WriteError, match=f'{target}.*disk is full'):
        with atomic_path(target) as partial:
            partial.write_text('half')
            raise OSError(28, 'No space left on device')
    assert target.read_text() == 'good' and list(tmp_path.iterdir()) == [target]


def test_out_of_memory_is_one_clear_line(data: dict[str, Path], weights_dir: Path,
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    run = TrainingRun(base=BASE, name=NAME, out=tmp_path / 'out',
                      table=classes.load_class_table(str(data['classes'])),
                      train_images=data['images'], train_labels=data['labels'], epochs=1,
                      input_size=SIZE, batch=2, show_progress=False, weights_dir=weights_dir)
    trainer = Trainer(run, log=lambda _: None)

    def exhausted(*_):
        raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')

    monkeypatch.setattr(trainer, 'train_epoch', exhausted)
    with pytest.raises(TrainingError, match='out of memory.*lower --batch or --input-size'):
        trainer.fit()
    assert not (tmp_path / 'out').exists()


def test_invalid_user_manifest_names_the_file(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / 'mine'
    folder.mkdir()
    (folder / registry.MANIFEST).write_text('{"format": 1, "models": [{"name": "x"}]}')
    monkeypatch.setenv(checkpoints.MODELS_ENV, str(folder))
    with pytest.raises(ManifestError, match=f'{folder / registry.MANIFEST}.*not a valid'):
        registry.user_manifest(folder)
    assert set(registry.registry()) == set(registry.official())  # skipped, with a warning
    (folder / registry.MANIFEST).write_text('{"format": 1, "datasets": {}, '
                                            '"normalizations": {}, "models": []}')
    assert set(registry.registry()) == set(registry.official())


def test_the_package_models_folder_on_the_variable_is_not_a_user_folder(
        weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = checkpoints.source_models_dir()
    monkeypatch.setenv(checkpoints.MODELS_ENV, f'{package}{os.pathsep}{weights_dir}')
    assert list(registry.registry()) == list(registry.official())


def test_a_user_model_cannot_shadow_an_official_one(trained: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / 'shadow'
    shutil.copytree(trained, copy)
    manifest = json.loads((copy / registry.MANIFEST).read_text())
    manifest['models'][0]['name'] = BASE
    (copy / registry.MANIFEST).write_text(json.dumps(manifest))
    monkeypatch.setenv(checkpoints.MODELS_ENV, str(copy))
    assert set(registry.registry()) == set(registry.official())  # skipped, with a warning
    with pytest.raises(registry.UnknownModelError, match='already registered'):
        registry.get_spec('not-a-model')


def test_the_node_publishes_the_user_classes_by_name(
        probe, trained: Path, weights_dir: Path, data: dict[str, Path],
        tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node loads the model by name from $ESPNET_ROS_MODELS and publishes its classes."""
    from rclpy.qos import (DurabilityPolicy, QoSProfile, qos_profile_sensor_data,
                           ReliabilityPolicy)
    from ros_helpers import camera_image, header_at, image_array, NodeProcess, \
        send_until_answered, serving, START_TIMEOUT_S
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    monkeypatch.setenv(checkpoints.MODELS_ENV, f'{weights_dir}{os.pathsep}{trained}')
    topic = '/robot/image_raw'
    node = NodeProcess('segmenter', {'model': NAME, 'device': 'cpu', 'precision': 'fp32'},
                       remaps=(('image', topic),), log_dir=tmp_path_factory.mktemp('node'))
    frame = cv2.imread(str(sorted(data['val_images'].iterdir())[0]))[..., ::-1]
    with serving(probe, node, topic):
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        table = probe.record(String, '/segmentation/classes', latched)
        labels = probe.record(Image, '/segmentation/labels')
        camera = probe.node.create_publisher(Image, topic, qos_profile_sensor_data)
        try:
            # Waits, not figures: a busy machine may take long to start and answer.
            probe.spin_until(lambda: table.messages, START_TIMEOUT_S, 'the latched class table')
            content = json.loads(table.messages[-1][1].data)
            assert content['model'] == NAME and content['void_class'] == VOID
            assert [c['name'] for c in content['classes']] == USER_CLASSES
            _, got = send_until_answered(
                probe, lambda stamp: camera.publish(
                    camera_image(np.ascontiguousarray(frame), 'rgb8',
                                 header_at(stamp, 'robot_camera'))), {'labels': labels},
                timeout_s=START_TIMEOUT_S)
            published = image_array(got['labels'])
            assert published.shape == frame.shape[:2] and published.max() <= 2
        finally:
            probe.forget([table, labels])
            probe.node.destroy_publisher(camera)
