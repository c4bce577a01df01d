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
Finding, verifying and fetching the official checkpoints.

Checkpoints are never trusted by name: a file is used only after its sha256 matches the
manifest, and it is then read with ``torch.load(..., weights_only=True)`` so that a
tampered file cannot run code. Folders are laid out like the authors' release
(``espnet/encoder/``, ``espnet/decoder/``, ``espnetv2/``) because encoder and decoder files
share names.
"""

import hashlib
import os
from pathlib import Path
import shutil
from typing import Iterable, Mapping, Optional
import urllib.request
import uuid

import torch

from espnet_ros.zoo import MODELS_ENV

PACKAGE = 'espnet_ros'
_HASH_CHUNK = 1 << 20
_DOWNLOAD_TIMEOUT_S = 60
# Far above any checkpoint of these networks (the largest official one, ESPNetv2 s=2.0, is
# 3.4 MB), so that a wrong file is refused at once instead of being hashed for minutes.
MAX_CHECKPOINT_BYTES = 256 << 20


class CheckpointError(RuntimeError):
    """A checkpoint is missing, does not match the manifest, or cannot be read."""


def check_size(path: Path) -> None:
    """Raise :class:`CheckpointError` if ``path`` is far larger than any checkpoint could be."""
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(
            f'checkpoint {path} is {size / (1 << 20):,.0f} MiB, more than the '
            f'{MAX_CHECKPOINT_BYTES >> 20} MiB any checkpoint of these networks could be: '
            'not a checkpoint of a registry model')


def check_finite(path: Path, state: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`CheckpointError` if a floating-point tensor holds NaN or infinity."""
    broken = [name for name, tensor in state.items()
              if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if broken:
        raise CheckpointError(
            f'checkpoint {path} holds NaN or infinite values in {len(broken)} tensors '
            f'(first: {broken[0]}): the weights are broken (diverged training?)')


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for chunk in iter(lambda: stream.read(_HASH_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def source_models_dir() -> Path:
    """Return the ``models/`` folder of the source tree this module was imported from."""
    return Path(__file__).resolve().parents[2] / 'models'


def installed_models_dir() -> Optional[Path]:
    """Return ``share/espnet_ros/models`` of a colcon or pip install, if there is one."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE)) / 'models'
    except Exception:  # noqa: B902 - no ament index, or the package is not in it
        pass
    prefix_share = Path(os.sys.prefix) / 'share' / PACKAGE / 'models'
    return prefix_share if prefix_share.is_dir() else None


def env_folders() -> list[Path]:
    """Return the model folders named by ``$ESPNET_ROS_MODELS`` (``os.pathsep``-separated)."""
    return [Path(part) for part in os.environ.get(MODELS_ENV, '').split(os.pathsep) if part]


def search_dirs(weights_dir: Optional[Path] = None) -> list[Path]:
    """Return the folders searched for checkpoints, in order of precedence."""
    candidates = [weights_dir, *env_folders(), installed_models_dir(), source_models_dir()]
    unique: list[Path] = []
    for candidate in candidates:
        if candidate is not None and Path(candidate) not in unique:
            unique.append(Path(candidate))
    return unique


def find_checkpoint(relative: str, weights_dir: Optional[Path] = None) -> Optional[Path]:
    """Return the first existing ``<dir>/<relative>`` over :func:`search_dirs`, or None."""
    for folder in search_dirs(weights_dir):
        path = folder / relative
        if path.is_file():
            return path
    return None


def verify(path: Path, expected_sha256: str, *, how_to_fetch: str) -> None:
    """Raise :class:`CheckpointError` unless ``path`` exists and has the expected sha256."""
    if not path.is_file():
        raise CheckpointError(f'checkpoint {path} does not exist (expected sha256 '
                              f'{expected_sha256}). {how_to_fetch}')
    check_size(path)
    actual = sha256_of(path)
    if actual != expected_sha256:
        raise CheckpointError(
            f'checkpoint {path} has sha256 {actual}, expected {expected_sha256}: the file is '
            f'truncated, corrupt or a different model. {how_to_fetch}')


def read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    """
    Read a plain ``state_dict`` with ``weights_only=True``; errors name the file.

    Files too large to be a checkpoint and weights that are not finite are refused.
    """
    check_size(path)
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # noqa: B902 - torch raises many types for a bad file
        raise CheckpointError(f'checkpoint {path} cannot be read as a weights-only PyTorch '
                              f'state_dict: {error}') from error
    if not isinstance(state, Mapping) or not all(
            isinstance(value, torch.Tensor) for value in state.values()):
        raise CheckpointError(f'checkpoint {path} is not a state_dict of tensors')
    check_finite(path, state)
    return state


# New files get read-write for all, less the umask, as open() and shutil give them: a node
# running as another user on the robot must read what fetch and train wrote.
NEW_FILE_MODE = 0o666


def new_partial(target: Path) -> Path:
    """
    Create an empty, uniquely named file beside ``target`` and return its path.

    Unlike tempfile's (always 0600), its mode honours the umask, so that the file it is
    renamed to has the mode any other new file would have.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.parent / f'.{target.name}.{uuid.uuid4().hex}.partial'
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE))
    return partial


def fetch(items: Iterable[tuple[str, str, str]], destination: Path, *,
          source_dir: Optional[Path] = None) -> list[Path]:
    """
    Copy or download checkpoints into ``destination`` and verify each sha256.

    ``items`` are ``(relative path, url, sha256)`` triples. With ``source_dir`` the files are
    copied from a local folder laid out the same way (no network); otherwise they are
    downloaded from ``url``. Files already present with the right sha256 are kept.
    """
    fetched = []
    for relative, url, expected in items:
        target = destination / relative
        if target.is_file() and sha256_of(target) == expected:
            fetched.append(target)
            continue
        # Write beside the target, then rename, so an interrupted fetch leaves no half file.
        partial_path = new_partial(target)
        with open(partial_path, 'wb') as partial:
            try:
                if source_dir is not None:
                    with open(source_dir / relative, 'rb') as source:
                        shutil.copyfileobj(source, partial)
                else:
                    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                        shutil.copyfileobj(response, partial)
            except OSError as error:
                partial_path.unlink(missing_ok=True)
                where = source_dir / relative if source_dir is not None else url
                raise CheckpointError(f'cannot fetch {relative} from {where}: {error}') from error
        actual = sha256_of(partial_path)
        if actual != expected:
            partial_path.unlink()
            raise CheckpointError(f'{relative} fetched with sha256 {actual}, expected {expected}')
        partial_path.replace(target)
        fetched.append(target)
    return fetched
