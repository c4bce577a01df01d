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
Session-wide test setup: DDS isolation, a private ROS domain and the shared-data fixtures.

pytest imports this file before any test module, so the environment below is in place before
rclpy creates a participant, and every subprocess a test starts inherits it.
"""

import ast
from dataclasses import dataclass
import functools
import os
from pathlib import Path
import signal
import socket
import subprocess
import sys
import tempfile
from typing import Callable, Iterator

import cv2
from fastdds_shm import remove_stale_segments
from hypothesis import settings
import numpy as np
import pytest
from torch import nn

from espnet_ros.zoo.registry import load

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / 'shared'
CITYSCAPES_IMAGE = 'data/cityscapes/frankfurt_000000_000576_leftImg8bit.png'
PACKAGE = 'espnet_ros'
COLCON_TIMEOUT_S = 600

# Domains 1..101 keep every participant port below the Linux ephemeral range (32768+).
_DOMAIN_COUNT = 101
_DDS_PREFIXES = ('ROS_', 'RMW_', 'FASTRTPS_', 'FASTDDS_')


def _apply_ros_env() -> None:
    """Copy the DDS variables that scripts/ros_env.sh sets or clears into this process."""
    script = REPO_ROOT / 'scripts' / 'ros_env.sh'
    # Sourcing the script itself keeps one definition of the isolation for shells and tests.
    dump = subprocess.run(
        ['bash', '-c', '. "$1" >/dev/null && env -0', 'ros_env', str(script)],
        check=True, capture_output=True, text=True).stdout
    sourced = dict(line.split('=', 1) for line in dump.split('\0') if '=' in line)
    for name in [n for n in os.environ if n.startswith(_DDS_PREFIXES) and n not in sourced]:
        del os.environ[name]
    os.environ.update({n: v for n, v in sourced.items() if n.startswith(_DDS_PREFIXES)})


def _domain_in_use(domain_id: int) -> bool:
    """Tell whether a participant on this host already holds the domain's first ports."""
    # RTPS well-known ports: 7400 + 250 * domain, +10 + 2 * participant for unicast discovery.
    base = 7400 + 250 * domain_id + 10
    for port in (base, base + 2):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(('127.0.0.1', port))
            except OSError:
                return True
    return False


def _pick_domain_id() -> int:
    """Pick a domain from this run's pid, moving on past domains another run is using."""
    start = os.getpid() % _DOMAIN_COUNT
    for offset in range(_DOMAIN_COUNT):
        domain_id = (start + offset) % _DOMAIN_COUNT + 1
        if not _domain_in_use(domain_id):
            return domain_id
    return start + 1


_apply_ros_env()
os.environ['ROS_DOMAIN_ID'] = str(_pick_domain_id())
# A shell without job control starts background jobs with SIGINT ignored, and an ignored
# signal stays ignored in every child: ros2 launch then never hears the tests' Ctrl-C. A
# handler (unlike SIG_IGN) is reset to the default in each child that the tests start.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# Node processes and CLI runs started by the tests find the official checkpoints here.
if (SHARED_DIR / 'weights').is_dir():
    os.environ['ESPNET_ROS_MODELS'] = str(SHARED_DIR / 'weights')
if (SHARED_DIR / 'data').is_dir():  # as scripts/activate.sh sets it
    os.environ['ESPNET_ROS_DATA'] = str(SHARED_DIR / 'data')
# Compiled graphs that nodes and launches build go to a folder of this session's, not the
# user's cache (the node's default compile_mode builds one aside).
os.environ['ESPNET_ROS_CACHE'] = tempfile.mkdtemp(prefix='espnet_ros_cache_')

STALE_SEGMENTS = pytest.StashKey[int]()
FINISH_MIN_AGE_S = 5.0  # this run's own leftovers; a participant being made is younger
COMPILED_CACHE_BUILD_TIMEOUT_S = 900.0  # one compile on a busy two-core machine

# A loaded 2-core CI machine makes per-example deadlines flaky; failures print their seed.
settings.register_profile('espnet_ros', deadline=None, print_blob=True)
settings.load_profile('espnet_ros')


# Markers for a fast loop (`./scripts/test.sh -m "not dds and not slow"`); the README's test
# command runs everything. 'dds': the test talks over DDS (a node, a launch, the ros2 tools),
# seen from what its module imports or the fixtures it takes. 'slow': the test compiles a
# graph, trains, launches, or runs a command end to end (seconds to minutes each).
DDS_MODULE_NAMES = {'ros_helpers', 'readme_node', 'launch_helpers', 'rclpy', 'dds_chatter'}
DDS_FIXTURES = {'probe', 'colcon_install'}
SLOW_FIXTURES = {'compiled_cache', 'colcon_install', 'small_disk'}
SLOW_MODULES = {'test_accuracy', 'test_cache_security', 'test_graph_cache', 'test_launch_files',
                'test_readme', 'test_ros_tools', 'test_segmenter_compiled', 'test_shared_cores',
                'test_soak', 'test_training', 'test_bench_export', 'test_offline_safety'}


def pytest_configure(config: pytest.Config) -> None:
    """Register the ament linter markers (in case their plugins are absent) and ours."""
    for name in ('copyright', 'flake8', 'pep257', 'linter'):
        config.addinivalue_line('markers', f'{name}: ament {name} check')
    config.addinivalue_line('markers', 'dds: talks over DDS (nodes, launches, ros2 tools)')
    config.addinivalue_line('markers', 'slow: compiles, trains, launches or runs a command')


def _imports_ros(module: object) -> bool:
    """Return True if a test module imported the ROS test helpers or rclpy."""
    source = getattr(module, '__file__', None)
    if not source:
        return False
    imported = set()
    for node in ast.walk(ast.parse(Path(source).read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split('.')[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split('.')[0])
    return bool(imported & DDS_MODULE_NAMES)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test dds and slow as the comments above say."""
    ros_modules: dict[str, bool] = {}
    for item in items:
        module = getattr(item, 'module', None)
        name = getattr(module, '__name__', '')
        if name not in ros_modules:
            ros_modules[name] = _imports_ros(module)
        fixtures = set(getattr(item, 'fixturenames', ()))
        if ros_modules[name] or fixtures & DDS_FIXTURES:
            item.add_marker(pytest.mark.dds)
        if name.rsplit('.', 1)[-1] in SLOW_MODULES or fixtures & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Free the shared memory that killed DDS processes of earlier runs left in /dev/shm."""
    session.config.stash[STALE_SEGMENTS] = remove_stale_segments()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Free what this run's killed node processes left (the tests kill some on purpose)."""
    session.config.stash[STALE_SEGMENTS] += remove_stale_segments(min_age_s=FINISH_MIN_AGE_S)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """Say how many Fast DDS segments of dead processes were removed."""
    removed = config.stash.get(STALE_SEGMENTS, 0)
    if removed:
        terminalreporter.write_line(f'removed {removed} Fast DDS shared-memory segments of '
                                    'processes that had gone (test/fastdds_shm.py)')


def pytest_report_header(config: pytest.Config) -> str:
    """Show the DDS setup the session runs under."""
    return 'ROS_DOMAIN_ID={} RMW_IMPLEMENTATION={} FASTRTPS_DEFAULT_PROFILES_FILE={}'.format(
        os.environ['ROS_DOMAIN_ID'], os.environ.get('RMW_IMPLEMENTATION'),
        os.environ.get('FASTRTPS_DEFAULT_PROFILES_FILE'))


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f'{what} not found at {path}: shared data is expected at ../shared')
    return path


@pytest.fixture(scope='session')
def shared_dir() -> Path:
    """Return the read-only shared data directory beside the repository (../shared)."""
    return _require(SHARED_DIR, 'shared data directory')


@pytest.fixture(scope='session')
def weights_dir(shared_dir: Path) -> Path:
    """Return shared/weights, the authors' official checkpoints."""
    return _require(shared_dir / 'weights', 'pretrained weights')


@pytest.fixture(scope='session')
def camvid_dir(shared_dir: Path) -> Path:
    """Return shared/data/camvid (val/, valannot/, val.txt)."""
    return _require(shared_dir / 'data' / 'camvid', 'CamVid val split')


@pytest.fixture(scope='session')
def cityscapes_image(shared_dir: Path) -> Path:
    """Return the one Cityscapes val image (2048x1024 RGB PNG)."""
    return _require(shared_dir / CITYSCAPES_IMAGE, 'Cityscapes sample image')


@pytest.fixture(scope='session')
def street_bgr(cityscapes_image: Path) -> np.ndarray:
    """Return the Cityscapes val image as cv2 reads it (BGR)."""
    return cv2.imread(str(cityscapes_image))


@functools.lru_cache(maxsize=None)
def _load_once(name: str, weights_dir: Path) -> nn.Module:
    return load(name, weights_dir)


@pytest.fixture(scope='session')
def pretrained(weights_dir: Path) -> Callable[[str], nn.Module]:
    """Return a loader of registry models that reads each checkpoint once per session."""
    return lambda name: _load_once(name, weights_dir)


@dataclass(frozen=True)
class CompiledCache:
    """A cache root (for $ESPNET_ROS_CACHE) holding one graph, and what the graph is for."""

    root: Path
    size: tuple[int, int] = (64, 32)  # the default model, small: a short build
    threads: int = 1                  # the node's count on two cores


@pytest.fixture(scope='session')
def compiled_cache(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path
                   ) -> CompiledCache:
    """
    Return a cache root holding one compiled graph: the default model at 64x32, one thread.

    Built once a session, in the background as the node builds it (without autotuning, to
    keep it short); one thread is what the node uses on two cores, and what the node tests
    set. Tests copy it before changing anything in it.
    """
    import torch

    from espnet_ros.runtime.engine import EngineConfig, SegmentationEngine
    from espnet_ros.runtime.graph_store import cache_folder, CACHE_ENV
    from espnet_ros.runtime.graph_switch import SwitchState
    from espnet_ros.zoo import DEFAULT_MODEL
    from espnet_ros.zoo.registry import get_spec

    cached = CompiledCache(tmp_path_factory.mktemp('compiled_cache'))
    log: list = []
    threads = torch.get_num_threads()
    torch.set_num_threads(cached.threads)
    try:
        network = _load_once(DEFAULT_MODEL, weights_dir)
        config = EngineConfig(input_size=cached.size, device='cpu', precision='auto',
                              backend='auto', compile_mode='background',
                              cache=cache_folder({CACHE_ENV: str(cached.root)}),
                              autotune=False)
        engine = SegmentationEngine(get_spec(DEFAULT_MODEL), network, config, log=log.append)
        state = engine.start_background().wait(COMPILED_CACHE_BUILD_TIMEOUT_S)
        engine.close()
    finally:
        torch.set_num_threads(threads)
    assert state == SwitchState.COMPILED, log
    assert any('compiling it in the background' in line for line in log), log
    return cached


@pytest.fixture()
def small_disk() -> Iterator[Callable[[Path, str], Path]]:
    """
    Return a function mounting a real tmpfs of a given size (e.g. '2m') at a folder.

    A full disk is a real full disk here: a small tmpfs, unmounted at the end. Skips where
    mounting is not allowed (not root, or no mount namespace rights).
    """
    mounted: list[Path] = []

    def mount(folder: Path, size: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size},mode=700',
                                 'tmpfs', str(folder)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f'cannot mount a small tmpfs here: {result.stderr.strip()}')
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(['umount', '-l', str(folder)], capture_output=True)


@pytest.fixture(scope='module')
def scene() -> np.ndarray:
    """Return a camera frame of noise (RGB) at the size the small node's tests send."""
    from ros_helpers import SMALL_CAMERA_SIZE  # imported here: only the ROS tests load rclpy

    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (SMALL_CAMERA_SIZE[1], SMALL_CAMERA_SIZE[0], 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def probe(request: pytest.FixtureRequest) -> Iterator:
    """Return a test node (ros_helpers.Probe) for the module, named after it."""
    from ros_helpers import Probe  # imported here: only the ROS tests load rclpy

    node = Probe(request.module.__name__.rsplit('.', 1)[-1] + '_probe')
    yield node
    node.close()


@pytest.fixture(scope='session')
def colcon_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the package with colcon, as in a ROS 2 workspace; return its install prefix."""
    work = tmp_path_factory.mktemp('colcon')
    env = dict(os.environ)
    # colcon must pick the package up from this tree alone, not from a sourced workspace.
    for name in ('AMENT_PREFIX_PATH', 'CMAKE_PREFIX_PATH', 'COLCON_PREFIX_PATH'):
        env.pop(name, None)
    command = [
        sys.executable, '-m', 'colcon', '--log-base', str(work / 'log'),
        'build', '--base-paths', str(REPO_ROOT),
        '--build-base', str(work / 'build'), '--install-base', str(work / 'install'),
        '--event-handlers', 'console_direct-',
    ]
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True,
                            timeout=COLCON_TIMEOUT_S)
    assert result.returncode == 0, f'colcon build failed:\n{result.stdout}\n{result.stderr}'
    assert f'Finished <<< {PACKAGE}' in result.stdout, result.stdout
    return work / 'install' / PACKAGE
