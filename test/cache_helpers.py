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


"""What the compiled-graph tests share: a private copy of the session's graph, its files."""

from pathlib import Path
import shutil
from typing import Iterator

import torch

from espnet_ros.runtime.engine import EngineConfig, SegmentationEngine
from espnet_ros.runtime.graph_store import CACHE_ENV, cache_folder, PACKAGE_SUFFIX, SIDECAR_SUFFIX
from espnet_ros.zoo import DEFAULT_MODEL


def private_copy(compiled_cache, tmp_path: Path) -> Iterator[Path]:
    """Yield a private (0700) copy of ``compiled_cache``'s graphs, at the thread count it needs."""
    copy = tmp_path / 'graphs'
    shutil.copytree(cache_folder({CACHE_ENV: str(compiled_cache.root)}), copy,
                    ignore=shutil.ignore_patterns('*.lock', 'build-*'))
    copy.chmod(0o700)
    threads = torch.get_num_threads()
    torch.set_num_threads(compiled_cache.threads)
    try:
        yield copy
    finally:
        torch.set_num_threads(threads)


def entry_files(cache: Path) -> tuple[Path, Path]:
    """Return the one package and sidecar of a cache folder."""
    package, = cache.glob(f'*{PACKAGE_SUFFIX}')
    sidecar, = cache.glob(f'*{SIDECAR_SUFFIX}')
    return package, sidecar


def engine_config(mode: str, cache: Path, size: tuple[int, int],
                  precision: str = 'auto') -> EngineConfig:
    """Return the configuration of an engine over ``cache`` (no autotuning: short builds)."""
    return EngineConfig(input_size=size, device='cpu', precision=precision, backend='auto',
                        compile_mode=mode, cache=cache, autotune=False)


def engine_over(weights_dir: Path, cache: Path, mode: str, log: list, size: tuple[int, int],
                precision: str = 'auto') -> SegmentationEngine:
    """Return the default model's engine over ``cache`` as the node builds one, started."""
    from espnet_ros.zoo.registry import get_spec, load

    engine = SegmentationEngine(get_spec(DEFAULT_MODEL), load(DEFAULT_MODEL, weights_dir),
                                engine_config(mode, cache, size, precision), log=log.append)
    engine.start_background()
    return engine
