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
Compiled graphs on disk: built aside, loaded from the cache, switched to mid-stream.

One real AOTInductor build of the default model at a small input size (conftest's
``compiled_cache``) serves the session; each test works on its own copy of it.
"""

import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import time
from typing import Iterator

import cache_helpers
from cache_helpers import engine_over, entry_files, private_copy
import numpy as np
import pytest
import torch
from torch import nn

from espnet_ros.runtime.engine import (EngineConfig, EngineConfigError, probe_frame,
                                       SegmentationEngine)
from espnet_ros.runtime.graph_builder import prepare_network
from espnet_ros.runtime.graph_cache import load_verified, MIN_PROBE_AGREEMENT
from espnet_ros.runtime.graph_key import GraphKey, weights_sha256
from espnet_ros.runtime.graph_store import (CACHE_ENV, cache_folder, Entry, GraphCacheError,
                                            open_store, PACKAGE_SUFFIX, SIDECAR_SUFFIX)
from espnet_ros.runtime.graph_switch import SwitchState
from espnet_ros.runtime.mixed_precision import cpu_bf16_supported
from espnet_ros.zoo import DEFAULT_MODEL

SIZE = (64, 32)   # conftest's compiled_cache: checked by the cache fixture
THREADS = 1
LOAD_TIMEOUT_S = 120
BUILD_TIMEOUT_S = 900  # a build of the small graph, on a busy machine
BENCHMARK_AGREEMENT = 0.995  # what `espnet-ros bench` asks of a fast path against eager fp32
SWITCH_FRAMES = 400


def engine_config(mode: str, cache: Path, precision: str = 'auto') -> EngineConfig:
    """Return the configuration of an engine over ``cache`` (no autotuning: short builds)."""
    return cache_helpers.engine_config(mode, cache, SIZE, precision)


def graph_precision(cache: Path) -> str:
    """Return the precision the default graph is built in on this CPU."""
    from espnet_ros.zoo.registry import get_spec

    return engine_config('background', cache).resolve(get_spec(DEFAULT_MODEL)).graph_precision


def built_engine(weights_dir: Path, cache: Path, mode: str, log: list,
                 precision: str = 'auto') -> SegmentationEngine:
    """Return an engine over ``cache``, its graph switch started."""
    return engine_over(weights_dir, cache, mode, log, SIZE, precision)


@pytest.fixture()
def cache(compiled_cache, tmp_path: Path) -> Iterator[Path]:
    """Return a private copy of the session's compiled graph, at the thread count it needs."""
    assert (compiled_cache.size, compiled_cache.threads) == (SIZE, THREADS)
    yield from private_copy(compiled_cache, tmp_path)


def test_cache_folder_follows_the_environment(tmp_path: Path) -> None:
    assert cache_folder({CACHE_ENV: str(tmp_path)}) == tmp_path / 'graphs'
    assert cache_folder({'XDG_CACHE_HOME': str(tmp_path)}) == tmp_path / 'espnet_ros/graphs'
    assert cache_folder({}) == Path('~/.cache/espnet_ros/graphs').expanduser()


def test_key_changes_with_everything_that_makes_a_graph_valid(pretrained) -> None:
    network = pretrained(DEFAULT_MODEL)
    base = GraphKey(model=DEFAULT_MODEL, weights_sha256=weights_sha256(network),
                    input_size=SIZE, batch=1, precision='fp32', threads=1, device='cpu',
                    cpu='x86_64 AVX2', torch_version=torch.__version__)
    changed = [GraphKey(**{**base.__dict__, field: value}) for field, value in (
        ('weights_sha256', '0' * 64), ('input_size', (128, 64)), ('precision', 'mixed'),
        ('threads', 2), ('cpu', 'x86_64 AVX512'), ('torch_version', '0.0'),
        ('format_version', 0), ('batch', 2))]
    stems = {key.stem() for key in [base, *changed]}
    assert len(stems) == len(changed) + 1
    assert GraphKey.from_json(json.loads(json.dumps(base.to_json()))) == base


def test_weights_hash_sees_one_changed_value(pretrained) -> None:
    import copy

    network = copy.deepcopy(pretrained(DEFAULT_MODEL))
    before = weights_sha256(network)
    with torch.no_grad():
        next(network.parameters()).view(-1)[0] += 1e-6
    assert weights_sha256(network) != before


@pytest.mark.parametrize('precision', ['fp32', 'mixed'])
def test_built_graph_agrees_with_eager_on_a_real_frame(
        precision: str, cache: Path, tmp_path: Path, weights_dir: Path,
        street_bgr: np.ndarray) -> None:
    """
    Each precision the CPU has agrees with eager in its own and with eager fp32.

    The session's graph is the default one (mixed with bf16, else fp32); the other is built
    here. Each agrees with eager in its own precision as closely as the cache's probe asks,
    and with eager fp32 as closely as the benchmark asks of every fast path.
    """
    if precision == 'mixed' and not cpu_bf16_supported():
        pytest.skip('this CPU has no native bf16: mixed precision is not built')
    log: list = []
    default = graph_precision(cache)
    mode = 'cached' if precision == default else 'background'
    served = built_engine(weights_dir, cache if mode == 'cached' else tmp_path / 'graphs',
                          mode, log, precision)
    try:
        assert served.graph_switch.wait(BUILD_TIMEOUT_S) == SwitchState.COMPILED, log
        assert served.graph_switch.key.precision == precision
        assert served.compiled and served.describe_runner() == f'compiled graph ({precision})'
        compiled = served.segment(street_bgr, order='bgr', with_confidence=True)
        # Without confidence the package's labels graph runs: the same labels, no softmax.
        labels_alone = served.segment(street_bgr, order='bgr')
        assert labels_alone.confidence is None
        np.testing.assert_array_equal(labels_alone.labels, compiled.labels)
        for arithmetic, rule in ((precision, MIN_PROBE_AGREEMENT[precision]),
                                 ('fp32', BENCHMARK_AGREEMENT)):
            eager = SegmentationEngine.from_pretrained(DEFAULT_MODEL, weights_dir=weights_dir,
                                                       input_size=SIZE, device='cpu',
                                                       precision=arithmetic, backend='torch')
            reference = eager.segment(street_bgr, order='bgr', with_confidence=True)
            agreement = (compiled.labels == reference.labels).mean()
            assert agreement >= rule, (arithmetic, agreement)
            if arithmetic == precision:
                assert np.abs(compiled.confidence - reference.confidence).max() < 0.02
    finally:
        served.close()


def test_a_disagreeing_graph_is_remembered_and_not_rebuilt(
        cache: Path, weights_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule no graph can meet: the entry is removed, recorded, and no start builds it."""
    from espnet_ros.runtime import graph_cache

    precision = graph_precision(cache)
    monkeypatch.setitem(graph_cache.MIN_PROBE_AGREEMENT, precision, 1.5)
    log: list = []
    first = built_engine(weights_dir, cache, 'background', log)
    assert first.graph_switch.wait(LOAD_TIMEOUT_S) == SwitchState.EAGER, log
    entry = first.graph_switch.entry
    record = entry.folder / graph_cache.rejection_name(entry)
    assert not entry.exists() and record.is_file()
    assert json.loads(record.read_text())['agreement'] <= 1.0
    assert 'not building it again' in first.graph_switch.describe()
    again: list = []
    second = built_engine(weights_dir, cache, 'background', again)
    assert second.graph_switch.wait(LOAD_TIMEOUT_S) == SwitchState.EAGER, again
    assert str(record) in second.graph_switch.describe()
    assert not any('compiling' in line for line in again), again
    assert not list(cache.glob('build-*')) and not list(cache.glob(f'*{PACKAGE_SUFFIX}'))
    # The record holds for this rule only: under the real one the graph may be built again.
    monkeypatch.undo()
    with open_store(cache) as store:
        assert graph_cache.rejected_before(entry, store) is None
        record.write_text('{not json')
        assert graph_cache.rejected_before(entry, store) is None


def test_building_an_engine_starts_nothing(tmp_path: Path, weights_dir: Path) -> None:
    """Inert until asked: no thread, no builder, no job file, the caller's network as it was."""
    import threading

    from espnet_ros.zoo.registry import get_spec, load

    network = load(DEFAULT_MODEL, weights_dir).train()
    threads = set(threading.enumerate())
    log: list = []
    served = SegmentationEngine(get_spec(DEFAULT_MODEL), network,
                                engine_config('background', tmp_path), log=log.append)
    assert network.training, "the engine set the caller's network to eval mode"
    assert set(threading.enumerate()) == threads and served.graph_switch is None
    assert not list(tmp_path.iterdir()) and served.describe_graph() == 'none'
    switch = served.start_background()
    try:
        assert switch is not None and served.graph_switch is switch
        assert served.start_background() is switch, 'a second call starts no second switch'
    finally:
        served.close()


def _entry_network_and_probe(cache: Path, weights_dir: Path
                             ) -> tuple[GraphKey, nn.Module, torch.Tensor]:
    """Return the cached entry's key, the default model freshly loaded, and a probe batch."""
    from espnet_ros.zoo.registry import get_spec, load

    _, sidecar = entry_files(cache)
    key = GraphKey.from_json(json.loads(sidecar.read_text())['key'])
    network = load(DEFAULT_MODEL, weights_dir)
    engine = SegmentationEngine(get_spec(DEFAULT_MODEL), network,
                                EngineConfig(input_size=SIZE))
    return key, network, engine.preprocess([probe_frame(*SIZE)]).float()


def test_a_graph_whose_confidence_drifts_is_refused(cache: Path, weights_dir: Path) -> None:
    """Labels alone would pass: logits doubled keep every arg-max, not the probabilities."""
    key, network, probe = _entry_network_and_probe(cache, weights_dir)
    with open_store(cache) as store:
        load_verified(Entry(cache, key), prepare_network(network, key.precision), probe, store)
        with torch.no_grad():
            network.classifier.weight.mul_(2)  # the last layer: linear, no bias
        with pytest.raises(GraphCacheError, match='confidence differs'):
            load_verified(Entry(cache, key), prepare_network(network, key.precision), probe,
                          store)


def test_frames_without_confidence_run_the_labels_graph(cache: Path,
                                                        weights_dir: Path) -> None:
    """The package holds a labels graph, and a frame that asks no confidence runs only it."""
    key, network, probe = _entry_network_and_probe(cache, weights_dir)
    with open_store(cache) as store:
        graph = load_verified(Entry(cache, key), prepare_network(network, key.precision),
                              probe, store)
    expected, confidence = graph(probe)
    assert confidence is not None

    def refuse(batch: torch.Tensor) -> None:
        raise AssertionError('the labels-and-confidence graph ran for labels alone')
    graph._with_confidence = refuse
    labels, none = graph(probe, with_confidence=False)
    assert none is None and torch.equal(labels, expected)


def test_corrupt_package_is_removed_not_trusted(cache: Path, weights_dir: Path) -> None:
    package, sidecar = entry_files(cache)
    data = bytearray(package.read_bytes())
    data[len(data) // 2] ^= 0xFF
    package.write_bytes(bytes(data))
    log: list = []
    served = built_engine(weights_dir, cache, 'cached', log)
    assert served.graph_switch.wait(LOAD_TIMEOUT_S) == SwitchState.EAGER
    assert not served.compiled
    text = '\n'.join(log)
    assert 'corrupt or changed' in text and 'removed' in text, text
    assert not package.exists() and not sidecar.exists()
    assert 'not in the cache' in served.graph_switch.describe()


def test_truncated_package_is_removed(cache: Path, weights_dir: Path) -> None:
    package, _ = entry_files(cache)
    package.write_bytes(package.read_bytes()[:1000])
    log: list = []
    served = built_engine(weights_dir, cache, 'cached', log)
    assert served.graph_switch.wait(LOAD_TIMEOUT_S) == SwitchState.EAGER
    assert not package.exists()


def test_sidecar_of_another_key_is_stale(cache: Path, weights_dir: Path) -> None:
    package, sidecar = entry_files(cache)
    record = json.loads(sidecar.read_text())
    record['key']['torch_version'] = '0.0'
    sidecar.write_text(json.dumps(record))
    log: list = []
    served = built_engine(weights_dir, cache, 'cached', log)
    assert served.graph_switch.wait(LOAD_TIMEOUT_S) == SwitchState.EAGER
    assert any('made for another model' in line for line in log), log
    assert not package.exists()


def test_unreadable_sidecar_is_removed(cache: Path, weights_dir: Path) -> None:
    _, sidecar = entry_files(cache)
    sidecar.write_text('{not json')
    log: list = []
    served = built_engine(weights_dir, cache, 'cached', log)
    assert served.graph_switch.wait(LOAD_TIMEOUT_S) == SwitchState.EAGER
    assert any('not a readable cache record' in line for line in log), log


def test_other_weights_miss_the_entry(cache: Path, weights_dir: Path) -> None:
    from espnet_ros.zoo.registry import get_spec, load

    network = load(DEFAULT_MODEL, weights_dir)
    with torch.no_grad():
        next(network.parameters()).view(-1)[0] += 1.0
    log: list = []
    served = SegmentationEngine(get_spec(DEFAULT_MODEL), network, EngineConfig(
        input_size=SIZE, device='cpu', backend='auto', compile_mode='cached', cache=cache),
        log=log.append)
    served.start_background()
    assert served.graph_switch.wait(LOAD_TIMEOUT_S) == SwitchState.EAGER
    assert 'not in the cache' in served.graph_switch.describe()
    assert len(list(cache.glob(f'*{PACKAGE_SUFFIX}'))) == 1  # the other model's entry stays


def test_switch_mid_stream_drops_and_mislabels_nothing(
        cache: Path, weights_dir: Path, street_bgr: np.ndarray) -> None:
    """Frames keep coming while the graph is loaded; each one is answered and right."""
    eager = SegmentationEngine.from_pretrained(DEFAULT_MODEL, weights_dir=weights_dir,
                                               input_size=SIZE, device='cpu', backend='torch')
    frames = [np.ascontiguousarray(np.roll(street_bgr, shift, axis=1))
              for shift in range(0, 400, 40)]
    expected = [eager.segment(frame, order='bgr').labels for frame in frames]
    log: list = []
    served = built_engine(weights_dir, cache, 'cached', log)
    runners, agreements = [], []
    try:
        for index in range(SWITCH_FRAMES):
            frame = index % len(frames)
            runners.append(served.compiled)
            labels = served.segment(frames[frame], order='bgr').labels
            agreements.append((labels == expected[frame]).mean())
            if served.compiled and runners.count(True) > len(frames):
                break
    finally:
        served.close()
    assert not runners[0], 'the first frame must not wait for the graph'
    assert runners[-1], f'no switch within {SWITCH_FRAMES} frames: {log}'
    switched = runners.index(True)
    assert all(runners[switched:]), 'once switched, every frame runs the graph'
    # fp32 or mixed precision (agreement with fp32 measured on CamVid, see the README).
    assert min(agreements) >= 0.99, min(agreements)


def test_a_batch_that_is_not_full_runs_frame_by_frame_on_the_one_frame_graph(
        cache: Path, pretrained, street_bgr: np.ndarray) -> None:
    """
    Several cameras' batches: the full one on its own graph, one not full on the one-frame graph.

    Three cameras (a graph for three frames, built here) whose batch of two (a camera without
    a new frame) runs each frame through the session's one-frame graph, not eager.
    """
    from espnet_ros.zoo.registry import get_spec

    log: list = []
    served = SegmentationEngine(get_spec(DEFAULT_MODEL), pretrained(DEFAULT_MODEL),
                                engine_config('background', cache), log=log.append)
    frames = [np.ascontiguousarray(np.roll(street_bgr, shift, axis=1)) for shift in (0, 90, 180)]
    try:
        assert served.start_background(3).wait(BUILD_TIMEOUT_S) == SwitchState.COMPILED, log
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while 'batches of 1 and 3' not in served.describe_runner():
            assert time.monotonic() < deadline, (served.describe_graph(), log)
            time.sleep(0.1)
        alone = [served.labels_and_confidence(served.preprocess([frame], 'bgr'),
                                              with_confidence=True) for frame in frames]
        two, two_confidence = served.labels_and_confidence(
            served.preprocess(frames[:2], 'bgr'), with_confidence=True)
        three, _ = served.labels_and_confidence(served.preprocess(frames, 'bgr'))
    finally:
        served.close()
    # The same graph frame by frame: the same labels and confidence, to the bit.
    for index in range(2):
        assert np.array_equal(two[index], alone[index][0][0])
        assert np.array_equal(two_confidence[index], alone[index][1][0])
    for index in range(3):
        assert (three[index] == alone[index][0][0]).mean() >= MIN_PROBE_AGREEMENT['fp32']


def test_cached_mode_never_builds(tmp_path: Path, weights_dir: Path) -> None:
    log: list = []
    served = built_engine(weights_dir, tmp_path, 'cached', log)
    assert served.graph_switch.wait(LOAD_TIMEOUT_S) == SwitchState.EAGER
    assert 'does not build' in served.graph_switch.describe()
    assert not list(tmp_path.glob('build-*'))


def test_close_ends_a_build_in_progress(tmp_path: Path, weights_dir: Path) -> None:
    log: list = []
    served = built_engine(weights_dir, tmp_path, 'background', log)
    switch = served.graph_switch
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    while switch.state() != SwitchState.BUILDING and time.monotonic() < deadline:
        time.sleep(0.05)
    assert switch.state() == SwitchState.BUILDING, switch.describe()
    process = switch._process
    served.close()
    assert process.poll() is not None, 'the builder outlived close()'
    assert switch.state() == SwitchState.CLOSED
    assert not served.compiled
    assert not list(tmp_path.glob(f'*{PACKAGE_SUFFIX}'))


def test_failed_build_keeps_serving_eager(tmp_path: Path, weights_dir: Path,
                                          street_bgr: np.ndarray) -> None:
    blocked = tmp_path / 'not-a-folder'
    blocked.write_text('a file where the cache folder should be')
    log: list = []
    served = built_engine(weights_dir, blocked, 'background', log)
    assert served.graph_switch.wait(LOAD_TIMEOUT_S) == SwitchState.FAILED
    assert 'cannot write to the cache folder' in served.graph_switch.describe()
    assert served.segment(street_bgr, order='bgr').labels.shape == street_bgr.shape[:2]


def test_builder_child_reports_a_bad_job(tmp_path: Path) -> None:
    from espnet_ros.runtime.graph_store import open_store

    with open_store(tmp_path / 'graphs') as store:
        build = store.new_build()
    job = build.folder / 'job.pt'
    job.write_bytes(b'not a job')
    result = subprocess.run([sys.executable, '-m', 'espnet_ros.runtime.graph_builder', str(job),
                             str(os.getpid())],
                            capture_output=True, text=True, timeout=LOAD_TIMEOUT_S)
    build.close()
    assert result.returncode == 1
    assert result.stderr.startswith('graph build failed:')


@pytest.mark.parametrize('backend,device_reason', [
    ('torch', 'backend auto on the CPU'), ('onnxruntime', 'backend auto on the CPU')])
def test_other_backends_stay_as_asked(backend: str, device_reason: str, weights_dir: Path
                                      ) -> None:
    log: list = []
    served = SegmentationEngine.from_pretrained(
        DEFAULT_MODEL, weights_dir=weights_dir, input_size=SIZE, device='cpu',
        backend=backend, compile_mode='background', log=log.append)
    assert served.start_background() is None and served.graph_switch is None
    assert any(device_reason in line for line in log), log


def test_unknown_compile_mode_is_refused(weights_dir: Path) -> None:
    with pytest.raises(EngineConfigError, match='compile_mode must be one of eager, cached'):
        SegmentationEngine.from_pretrained(DEFAULT_MODEL, weights_dir=weights_dir,
                                           input_size=SIZE, device='cpu',
                                           compile_mode='sometimes')


def test_entry_paths_are_named_by_key(tmp_path: Path, pretrained) -> None:
    key = GraphKey(model='m', weights_sha256=weights_sha256(pretrained(DEFAULT_MODEL)),
                   input_size=SIZE, batch=1, precision='fp32', threads=1, device='cpu',
                   cpu='c', torch_version='t')
    entry = Entry(tmp_path, key)
    assert entry.package.name.startswith('m-64x32-b1-fp32-t1-')
    assert entry.package.suffix == PACKAGE_SUFFIX and entry.sidecar.suffix == SIDECAR_SUFFIX


def test_compile_command_finds_and_checks_the_entry(
        compiled_cache, tmp_path: Path, weights_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    from espnet_ros.cli import main as cli_main

    root = tmp_path / 'cache'
    shutil.copytree(compiled_cache.root, root, ignore=shutil.ignore_patterns('*.lock'))
    monkeypatch.setenv(CACHE_ENV, str(root))
    threads = torch.get_num_threads()
    try:
        assert cli_main(['compile', '--size', '{}x{}'.format(*SIZE), '--threads', str(THREADS),
                         '--weights-dir', str(weights_dir)]) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert 'loaded from the cache' in out and PACKAGE_SUFFIX in out, out
