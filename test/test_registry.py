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


"""The registry: every official checkpoint loads strictly, and bad ones are refused clearly."""

from pathlib import Path
import shutil

import pytest
import torch

from espnet_ros.cli import main as cli_main
from espnet_ros.zoo import checkpoints, registry

# The names are a contract with other tools: they must not drift.
EXPECTED_NAMES = (
    [f'espnet_c_p2q{q}_cityscapes' for q in (3, 5, 8)]
    + [f'espnet_p2q{q}_cityscapes' for q in (3, 5, 8)] + ['espnet_p2q8_camvid']
    + [f'espnetv2_s{s}_{data}_{size}' for s in ('0.5', '1.0', '1.5', '2.0')
       for data, sizes in (('cityscapes', ('512x256', '1024x512')),
                           ('pascal', ('256x256', '384x384'))) for size in sizes])
# Parameter counts of our modules (BN running statistics excluded); ESPNet p=2, q=8 with 20
# classes is the paper's 0.36 M.
EXPECTED_PARAMETERS = {
    'espnet_c_p2q3_cityscapes': 187_529, 'espnet_c_p2q5_cityscapes': 252_297,
    'espnet_c_p2q8_cityscapes': 349_449, 'espnet_p2q3_cityscapes': 202_649,
    'espnet_p2q5_cityscapes': 267_417, 'espnet_p2q8_cityscapes': 364_569,
    'espnet_p2q8_camvid': 354_517,
}


def test_registry_names_are_the_contract() -> None:
    assert sorted(registry.registry()) == sorted(EXPECTED_NAMES)


@pytest.mark.parametrize('name', EXPECTED_NAMES)
def test_every_entry_loads_strictly_and_verified(name: str, weights_dir: Path) -> None:
    spec = registry.get_spec(name)
    network = registry.load(name, weights_dir)
    assert not network.training
    state = checkpoints.read_state_dict(weights_dir / spec.checkpoint)
    filtered = registry.FAMILIES[spec.family].checkpoint_filter(state)
    ours = network.state_dict()
    assert set(filtered) <= set(ours)
    for key, tensor in filtered.items():
        # Exactly the checkpoint's values, but for subnormals set to zero (issue 22).
        if tensor.is_floating_point():
            tensor = torch.where(tensor.abs() < torch.finfo(tensor.dtype).tiny,
                                 torch.zeros_like(tensor), tensor)
        assert torch.equal(ours[key], tensor), key
    assert len(spec.dataset.classes) == len(spec.dataset.palette) == spec.num_classes
    parameters = sum(p.numel() for p in network.parameters())
    if name in EXPECTED_PARAMETERS:
        assert parameters == EXPECTED_PARAMETERS[name]


def test_unknown_model_lists_known_ones() -> None:
    with pytest.raises(registry.UnknownModelError) as error:
        registry.get_spec('espnet_p9q9')
    assert 'espnet_p9q9' in str(error.value) and 'espnet_p2q8_cityscapes' in str(error.value)


def _copy(weights_dir: Path, relative: str, into: Path) -> Path:
    target = into / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights_dir / relative, target)
    return target


def test_missing_checkpoint_names_file_sha_and_fetch(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(checkpoints.MODELS_ENV, str(tmp_path))
    monkeypatch.setattr(checkpoints, 'source_models_dir', lambda: tmp_path / 'src')
    monkeypatch.setattr(checkpoints, 'installed_models_dir', lambda: None)
    spec = registry.get_spec('espnet_p2q3_cityscapes')
    with pytest.raises(checkpoints.CheckpointError) as error:
        registry.load(spec.name)
    text = str(error.value)
    assert spec.checkpoint in text and spec.sha256 in text and 'espnet-ros fetch' in text


def test_truncated_checkpoint_is_refused(tmp_path: Path, weights_dir: Path) -> None:
    spec = registry.get_spec('espnet_p2q3_cityscapes')
    path = _copy(weights_dir, spec.checkpoint, tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(checkpoints.CheckpointError, match='expected ' + spec.sha256) as error:
        registry.load(spec.name, tmp_path)
    assert str(path) in str(error.value)


def test_wrong_architecture_needs_explicit_permission(tmp_path: Path, weights_dir: Path) -> None:
    wrong = weights_dir / registry.get_spec('espnet_p2q5_cityscapes').checkpoint
    with pytest.raises(checkpoints.CheckpointError, match='expected'):
        registry.load('espnet_p2q3_cityscapes', checkpoint=wrong)
    with pytest.warns(UserWarning, match='allow_unverified'):
        with pytest.raises(checkpoints.CheckpointError, match='does not fit model') as error:
            registry.load('espnet_p2q3_cityscapes', checkpoint=wrong, allow_unverified=True)
    assert str(wrong) in str(error.value)


def test_unverified_checkpoint_still_loads_weights_only(tmp_path: Path, weights_dir: Path) -> None:
    spec = registry.get_spec('espnet_p2q3_cityscapes')
    state = checkpoints.read_state_dict(weights_dir / spec.checkpoint)
    retrained = tmp_path / 'retrained.pth'
    torch.save({key: value + 0 for key, value in state.items()}, retrained)
    with pytest.warns(UserWarning):
        registry.load(spec.name, checkpoint=retrained, allow_unverified=True)
    pickled_code = tmp_path / 'code.pth'
    torch.save({'weights': state, 'run': shutil.rmtree}, pickled_code)
    with pytest.warns(UserWarning), pytest.raises(checkpoints.CheckpointError,
                                                  match='weights-only'):
        registry.load(spec.name, checkpoint=pickled_code, allow_unverified=True)


def test_weights_that_are_not_finite_are_refused_naming_the_file(
        tmp_path: Path, weights_dir: Path) -> None:
    spec = registry.get_spec('espnet_p2q3_cityscapes')
    state = dict(checkpoints.read_state_dict(weights_dir / spec.checkpoint))
    name = next(key for key, value in state.items() if value.is_floating_point())
    state[name] = torch.full_like(state[name], float('nan'))
    diverged = tmp_path / 'diverged.pth'
    torch.save(state, diverged)
    with pytest.warns(UserWarning), pytest.raises(checkpoints.CheckpointError,
                                                  match='NaN or infinite') as error:
        registry.load(spec.name, checkpoint=diverged, allow_unverified=True)
    assert str(diverged) in str(error.value) and name in str(error.value)


@pytest.mark.parametrize('allow_unverified', [False, True])
def test_a_file_far_larger_than_a_checkpoint_is_refused_unread(tmp_path: Path,
                                                               allow_unverified: bool) -> None:
    huge = tmp_path / 'huge.pth'
    with open(huge, 'wb') as stream:  # sparse: takes no disk space, but would take time to hash
        stream.truncate(checkpoints.MAX_CHECKPOINT_BYTES + 1)
    with pytest.raises(checkpoints.CheckpointError, match='MiB') as error:
        registry.load('espnet_p2q3_cityscapes', checkpoint=huge,
                      allow_unverified=allow_unverified)
    assert str(huge) in str(error.value)


def test_search_order_explicit_dir_before_environment(tmp_path: Path, weights_dir: Path,
                                                      monkeypatch) -> None:
    spec = registry.get_spec('espnet_c_p2q3_cityscapes')
    corrupt = _copy(weights_dir, spec.checkpoint, tmp_path / 'env')
    corrupt.write_bytes(b'not a checkpoint')
    monkeypatch.setenv(checkpoints.MODELS_ENV, str(tmp_path / 'env'))
    assert checkpoints.find_checkpoint(spec.checkpoint) == corrupt
    found = checkpoints.find_checkpoint(spec.checkpoint, weights_dir)
    assert found == weights_dir / spec.checkpoint
    registry.load(spec.name, weights_dir)


def test_fetch_from_local_copy_verifies_and_models_lists(tmp_path: Path, weights_dir: Path,
                                                         capsys) -> None:
    names = ['espnet_p2q3_cityscapes', 'espnetv2_s0.5_pascal_256x256']
    args = ['fetch', '--from', str(weights_dir), '--dest', str(tmp_path)]
    assert cli_main(args + sum((['--model', n] for n in names), [])) == 0
    for name in names:
        spec = registry.get_spec(name)
        assert checkpoints.sha256_of(tmp_path / spec.checkpoint) == spec.sha256
    assert cli_main(['models', '--weights-dir', str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert f'verified {tmp_path}' in listing
    (tmp_path / registry.get_spec(names[0]).checkpoint).write_bytes(b'tampered')
    assert cli_main(args + ['--model', names[0]]) == 0
    assert checkpoints.sha256_of(tmp_path / registry.get_spec(names[0]).checkpoint) == \
        registry.get_spec(names[0]).sha256


def test_fetch_refuses_a_source_with_the_wrong_file(tmp_path: Path, weights_dir: Path,
                                                    capsys) -> None:
    spec = registry.get_spec('espnet_p2q3_cityscapes')
    source = tmp_path / 'source'
    _copy(weights_dir, registry.get_spec('espnet_p2q5_cityscapes').checkpoint, source)
    (source / registry.get_spec('espnet_p2q5_cityscapes').checkpoint).rename(
        source / spec.checkpoint)
    status = cli_main(['fetch', '--from', str(source), '--dest', str(tmp_path / 'dest'),
                       '--model', spec.name])
    assert status == 2
    assert f'expected {spec.sha256}' in capsys.readouterr().err
    assert not (tmp_path / 'dest' / spec.checkpoint).exists()


def _user_model(folder: Path, name: str, weights_dir: Path) -> None:
    """Write a model folder as espnet-ros train does, holding an official model's weights."""
    from dataclasses import replace

    from espnet_ros.training.classes import from_dataset
    from espnet_ros.training.model_folder import checkpoint_name, register_model, save_state

    base = registry.get_spec('espnet_c_p2q3_cityscapes')
    save_state(folder / checkpoint_name(name), registry.load(base.name, weights_dir).state_dict())
    spec = replace(base, name=name, checkpoint=checkpoint_name(name), base=base.name)
    register_model(folder, spec=spec, base=base, table=from_dataset(base.dataset),
                   val_miou={'miou': 0.0, 'protocol': 'ignore-void', 'epoch': 0,
                             'split': 'none (a test copy)'})


def test_a_folder_of_model_folders_is_a_registry(tmp_path: Path, weights_dir: Path,
                                                 monkeypatch) -> None:
    for name in ('warehouse_bot', 'field_bot'):
        _user_model(tmp_path / 'models' / name, name, weights_dir)
    monkeypatch.setenv(checkpoints.MODELS_ENV, str(tmp_path / 'models'))
    assert registry.get_spec('warehouse_bot').folder == tmp_path / 'models' / 'warehouse_bot'
    assert registry.get_spec('field_bot').folder == tmp_path / 'models' / 'field_bot'


def test_a_registry_folder_that_gives_no_model_is_named(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / 'empty').mkdir()
    monkeypatch.setenv(checkpoints.MODELS_ENV,
                       f'{tmp_path / "missing"}:{tmp_path / "empty"}')
    with pytest.raises(registry.UnknownModelError) as error:
        registry.get_spec('warehouse_bot')
    assert f'{tmp_path / "missing"} does not exist' in str(error.value)
    assert f'{tmp_path / "empty"} holds no manifest.json, nor do its subfolders' in str(
        error.value)


@pytest.mark.parametrize('name', ['espnet_c_p2q3_cityscapes', 'warehouse_bot'])
def test_a_mistyped_explicit_weights_path_says_check_the_path(
        name: str, tmp_path: Path, weights_dir: Path, monkeypatch) -> None:
    if name == 'warehouse_bot':
        _user_model(tmp_path / 'models' / name, name, weights_dir)
        monkeypatch.setenv(checkpoints.MODELS_ENV, str(tmp_path / 'models'))
    typo = tmp_path / 'warehouse_bot.pht'
    with pytest.raises(checkpoints.CheckpointError) as error:
        registry.load(name, checkpoint=typo)
    assert f'checkpoint {typo} (the explicit weights file for {name}) does not exist: ' \
           'check the path' in str(error.value)
    assert 'train it again' not in str(error.value)
