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
The compiled-graph cache trusts only a private folder, follows no link and leaves no debris.

A package is a zip holding a shared library that is loaded into the node, so a planted one
is the attack: these tests compile a small library whose constructor writes a marker file,
plant it as a cache entry with a matching sidecar, and check that it is never loaded from a
folder others can write, nor from a file that is not the user's. Links planted in a
temporary cache must not be followed; odd or unreadable entries are removed, not sticky.
"""

import fcntl
import json
import os
from pathlib import Path
import shutil
import stat
import subprocess
import sys
import time
from typing import Iterator
import zipfile

import cache_helpers
from cache_helpers import entry_files, private_copy
import pytest
import torch

from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.runtime.graph_key import GraphKey
from espnet_ros.runtime.graph_store import (CACHE_ENV, cache_folder, Entry, open_store,
                                            UntrustedCacheError)
from espnet_ros.runtime.graph_switch import SwitchState
from espnet_ros.zoo import DEFAULT_MODEL

SIZE = (64, 32)   # conftest's compiled_cache
THREADS = 1
TIMEOUT_S = 180
BUILD_TIMEOUT_S = 1200
NOBODY = 65534
VICTIM_TEXT = 'precious\n'
CONSTRUCTOR = r"""
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *marker = fopen(MARKER, "w");
    if (marker) { fputs("planted code ran\n", marker); fclose(marker); }
}
"""


def engine_over(weights_dir: Path, cache: Path, mode: str, log: list) -> SegmentationEngine:
    """Return an engine over ``cache`` at the session graph's size, started."""
    return cache_helpers.engine_over(weights_dir, cache, mode, log, SIZE)


@pytest.fixture()
def cache(compiled_cache, tmp_path: Path) -> Iterator[Path]:
    """Return a private copy of the session's compiled graph, at the thread count it needs."""
    yield from private_copy(compiled_cache, tmp_path)


def plant_library(package: Path, sidecar: Path, marker: Path, work: Path) -> None:
    """Replace every shared library in ``package`` by one that writes ``marker`` when loaded."""
    compiler = shutil.which('gcc') or shutil.which('cc')
    if compiler is None:
        pytest.skip('no C compiler to build the planted library')
    source = work / 'planted.c'
    source.write_text(CONSTRUCTOR)
    library = work / 'planted.so'
    subprocess.run([compiler, '-shared', '-fPIC', f'-DMARKER="{marker}"', '-o', str(library),
                    str(source)], check=True, capture_output=True, timeout=TIMEOUT_S)
    planted = work / 'planted.pt2'
    with zipfile.ZipFile(package) as original, zipfile.ZipFile(planted, 'w') as copy:
        replaced = 0
        for item in original.infolist():
            if item.filename.endswith('.so'):
                copy.writestr(item, library.read_bytes())
                replaced += 1
            else:
                copy.writestr(item, original.read(item))
    assert replaced, 'the package holds no shared library to replace'
    shutil.copyfile(planted, package)
    # The sidecar vouches for the planted package: anyone who can write it can compute this.
    import hashlib
    record = json.loads(sidecar.read_text())
    record['package_sha256'] = hashlib.sha256(package.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(record))


def test_planted_library_is_not_loaded_from_a_folder_others_can_write(
        cache: Path, weights_dir: Path, tmp_path: Path) -> None:
    package, sidecar = entry_files(cache)
    marker = tmp_path / 'marker'
    plant_library(package, sidecar, marker, tmp_path)
    cache.chmod(0o777)  # a shared ESPNET_ROS_CACHE: anyone could have planted it
    log: list = []
    served = engine_over(weights_dir, cache, 'background', log)
    try:
        assert served.graph_switch.wait(TIMEOUT_S) == SwitchState.FAILED, log
        assert not marker.exists(), 'the planted library ran inside the process'
        assert not served.compiled
        warning = served.graph_switch.describe()
        assert str(cache) in warning and 'writable by group or others' in warning, warning
        assert 'chmod 700' in warning and CACHE_ENV in warning, warning
        assert package.exists(), 'nothing in an untrusted folder is touched'
        assert list(cache.glob('build-*')) == [], 'nothing is built into an untrusted folder'
    finally:
        served.close()


@pytest.mark.skipif(os.geteuid() != 0, reason='giving a file to another user needs root')
def test_planted_library_owned_by_another_user_is_not_loaded(
        cache: Path, weights_dir: Path, tmp_path: Path) -> None:
    package, sidecar = entry_files(cache)
    marker = tmp_path / 'marker'
    plant_library(package, sidecar, marker, tmp_path)
    os.chown(package, NOBODY, NOBODY)
    log: list = []
    served = engine_over(weights_dir, cache, 'cached', log)
    try:
        assert served.graph_switch.wait(TIMEOUT_S) == SwitchState.EAGER, log
        assert not marker.exists(), 'the planted library ran inside the process'
        assert any('not by this user' in line for line in log), log
        assert not package.exists(), 'an entry that is not ours is removed, to be rebuilt'
    finally:
        served.close()


def test_cache_folder_that_is_a_link_is_not_used(cache: Path, weights_dir: Path,
                                                 tmp_path: Path) -> None:
    link = tmp_path / 'linked'
    link.symlink_to(cache)
    log: list = []
    served = engine_over(weights_dir, link, 'cached', log)
    try:
        assert served.graph_switch.wait(TIMEOUT_S) == SwitchState.FAILED, log
        assert 'symlink' in served.graph_switch.describe()
    finally:
        served.close()


def test_cache_folder_is_created_private(tmp_path: Path) -> None:
    folder = cache_folder({CACHE_ENV: str(tmp_path / 'new' / 'cache')})
    old = os.umask(0o002)
    try:
        with open_store(folder) as store:
            assert store.folder == folder
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.parent.stat().st_mode) == 0o700


def test_entry_names_never_leave_the_folder(tmp_path: Path) -> None:
    for model in ('../../../../outside', '/etc/passwd', 'name with space ', '..', 'a\\b'):
        key = GraphKey(model=model, weights_sha256='0' * 64, input_size=SIZE, batch=1,
                       precision='fp32', threads=1, device='cpu', cpu='c', torch_version='t')
        entry = Entry(tmp_path, key)
        for path in (entry.package, entry.sidecar, tmp_path / entry.lock_name):
            assert path.parent == tmp_path, path
            assert '..' not in path.name and ' ' not in path.name and '/' not in path.name


def test_planted_lock_link_is_not_followed(cache: Path, weights_dir: Path,
                                           tmp_path: Path) -> None:
    """A builder finding the entry built takes the lock first: a planted link stays unused."""
    from espnet_ros.runtime.graph_builder import builder_command, write_job
    from espnet_ros.zoo.registry import get_spec, load

    package, _ = entry_files(cache)
    victim = tmp_path / 'victim.txt'
    victim.write_text(VICTIM_TEXT)
    lock = cache / (package.stem + '.lock')
    lock.symlink_to(victim)
    spec = get_spec(DEFAULT_MODEL)
    network = load(DEFAULT_MODEL, weights_dir)
    log: list = []
    served = engine_over(weights_dir, cache, 'cached', log)
    try:
        assert served.graph_switch.wait(TIMEOUT_S) == SwitchState.COMPILED, log
        key = served.graph_switch.key
    finally:
        served.close()
    job = write_job(Entry(cache, key), spec=spec.network, network=network, autotune=False)
    try:
        result = subprocess.run(builder_command(job.job), capture_output=True, text=True,
                                timeout=BUILD_TIMEOUT_S, pass_fds=(job.lock_fd,))
    finally:
        job.finish()
    assert result.returncode == 0, result.stderr[-2000:]
    assert victim.read_text() == VICTIM_TEXT, 'the lock link was followed'
    assert not os.path.lexists(lock), 'the lock is removed once released'
    assert list(cache.glob('build-*')) == []


def test_odd_entries_are_removed_not_sticky(cache: Path, weights_dir: Path) -> None:
    """A sidecar nested too deep, or a folder in its place: removed, and not a failure."""
    package, sidecar = entry_files(cache)
    for odd in ('deep', 'folder'):
        if odd == 'deep':
            sidecar.write_text('[' * 100_000 + ']' * 100_000)
        else:
            sidecar.mkdir()
            (sidecar / 'inside').write_text('x')
        log: list = []
        served = engine_over(weights_dir, cache, 'cached', log)
        try:
            assert served.graph_switch.wait(TIMEOUT_S) == SwitchState.EAGER, log
        finally:
            served.close()
        assert 'removed' in '\n'.join(log), log
        assert not os.path.lexists(sidecar) and not os.path.lexists(package), odd
        package.write_bytes(b'x')  # something for the next round to find


def test_sweep_removes_locks_and_builds_nobody_holds(tmp_path: Path) -> None:
    folder = tmp_path / 'graphs'
    with open_store(folder) as store:
        stale = store.new_build()
        stale.close()  # its holders are gone: a killed parent and child
        live = store.new_build()
        (folder / 'old.lock').write_text('')
        leftover = folder / 'job-abc123.pt'  # the earlier layout's job file, a day old
        leftover.write_bytes(b'x' * 1000)
        os.utime(leftover, (time.time() - 2 * 24 * 3600,) * 2)
        recent = folder / 'job-def456.pt'
        recent.write_bytes(b'x')
        held = folder / 'held.lock'
        held.write_text('')
        holder = os.open(held, os.O_RDONLY)
        fcntl.flock(holder, fcntl.LOCK_EX)
        try:
            store.sweep()
            assert not stale.folder.exists() and not (folder / 'old.lock').exists()
            assert live.folder.exists() and held.exists()
            assert not leftover.exists() and recent.exists()
        finally:
            os.close(holder)
            live.close()


def test_failed_job_write_on_a_full_disk_leaves_nothing(tmp_path: Path, weights_dir: Path,
                                                        small_disk) -> None:
    cache = small_disk(tmp_path / 'disk', '256k') / 'graphs'
    filler = cache.parent / 'filler'
    log: list = []
    served = engine_over(weights_dir, cache, 'background', log)
    try:
        assert served.graph_switch.wait(TIMEOUT_S) == SwitchState.FAILED, log
    finally:
        served.close()
    described = served.graph_switch.describe()
    assert 'No space left' in described, described
    assert list(cache.iterdir()) == [], 'the job file stayed on the full disk'
    assert not filler.exists()


def test_a_build_that_fills_the_disk_leaves_nothing(tmp_path: Path, weights_dir: Path,
                                                    small_disk) -> None:
    """The job fits, the package does not: the build fails and its folder goes with it."""
    cache = small_disk(tmp_path / 'disk', '2m') / 'graphs'
    log: list = []
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        served = engine_over(weights_dir, cache, 'background', log)
        try:
            assert served.graph_switch.wait(BUILD_TIMEOUT_S) == SwitchState.FAILED, log
        finally:
            served.close()
    finally:
        torch.set_num_threads(threads)
    assert 'the build failed' in served.graph_switch.describe(), log
    assert any('compiling it in the background' in line for line in log), log
    assert list(cache.iterdir()) == [], 'a failed build left files in the cache'


def test_untrusted_store_raises_one_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / 'graphs'
    folder.mkdir(mode=0o700)
    folder.chmod(0o770)
    with pytest.raises(UntrustedCacheError, match='writable by group or others'):
        open_store(folder)


def test_builder_refuses_a_job_outside_a_build_folder(tmp_path: Path) -> None:
    job = tmp_path / 'job.pt'
    job.write_bytes(b'x')
    result = subprocess.run([sys.executable, '-m', 'espnet_ros.runtime.graph_builder',
                             str(tmp_path / 'elsewhere.pt'), str(os.getpid())],
                            capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 2 and 'not a job file' in result.stderr
