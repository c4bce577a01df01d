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
Start-up against speed: from a fresh process to the first labels, and to compiled speed.

Each way of starting runs in a process of its own, as a node would start, with the start
measured from just before the process is spawned (Python, PyTorch and the model load
included):

* ``eager``: backend auto, compile_mode eager;
* ``jit``: compile_mode jit (backend torch-compile), compiled in the process at every start;
* ``cold``: backend auto, compile_mode background on an empty cache (built aside);
* ``warm``: backend auto, compile_mode cached, on the cache ``cold`` filled;
* ``onednn``: backend onednn, its plan compiled and built at every start (where it cannot
  run, its row holds the reason instead of figures).

Each reports the seconds to its first labels, to its final runner (the switch, for cold and
warm), and the median milliseconds per frame on that runner.
"""

from dataclasses import dataclass
import json
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional, Sequence

PHASES = ('eager', 'jit', 'cold', 'warm', 'onednn')
# The backend and compile_mode of each phase.
PHASE_SETTINGS = {'eager': ('auto', 'eager'), 'jit': ('auto', 'jit'),
                  'cold': ('auto', 'background'), 'warm': ('auto', 'cached'),
                  'onednn': ('onednn', 'eager')}
RESULT_PREFIX = 'RESULT '
SWITCH_TIMEOUT_S = 1800.0
POLL_S = 0.01


@dataclass(frozen=True)
class Request:
    """What one phase runs."""

    model: str
    size: tuple[int, int]
    threads: int
    repeats: int
    weights_dir: Optional[str] = None


def child_main(phase: str, request: Request, started: float) -> dict[str, Any]:
    """Run one phase in this (fresh) process; return its figures."""
    from espnet_ros.runtime.process import (flush_denormals_in_inference_threads, use_threads,
                                            wait_passively)

    wait_passively()  # as the node's entry point does, before PyTorch loads
    import numpy as np

    from espnet_ros.runtime.engine import probe_frame, SegmentationEngine

    use_threads(request.threads)
    flush_denormals_in_inference_threads()  # as the node does, in this fresh process
    backend, mode = PHASE_SETTINGS[phase]
    engine = SegmentationEngine.from_pretrained(
        request.model, weights_dir=request.weights_dir, input_size=request.size, device='cpu',
        precision='auto', backend=backend, compile_mode=mode)
    switch = engine.start_background()
    frame = probe_frame(*request.size)
    engine.segment(frame)
    first_labels = time.time() - started
    while switch is not None and not switch.settled():
        engine.segment(frame)  # serving meanwhile, as the node does
    final = time.time() - started
    times = []
    for _ in range(request.repeats):
        begin = time.perf_counter()
        engine.segment(frame)
        times.append(time.perf_counter() - begin)
    engine.close()
    return {'phase': phase, 'runner': engine.describe_runner(),
            'first_labels_s': round(first_labels, 2), 'final_runner_s': round(final, 2),
            'median_ms': round(1000 * float(np.median(times)), 2),
            'compiled_graph': switch.describe() if switch is not None else 'none'}


def run_phase(phase: str, request: Request, cache_root: Path) -> dict[str, Any]:
    """Run one phase in a fresh process over ``cache_root``; return its figures."""
    env = {**os.environ, 'ESPNET_ROS_CACHE': str(cache_root)}
    started = time.time()
    result = subprocess.run(
        [sys.executable, '-m', 'espnet_ros.tools.startup_bench', phase,
         json.dumps(request.__dict__), repr(started)],
        env=env, capture_output=True, text=True, timeout=SWITCH_TIMEOUT_S)
    lines = [line for line in result.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f'start-up phase {phase} failed (exit {result.returncode}): '
                           f'{result.stderr.strip()[-2000:]}')
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def unavailable(phase: str, request: Request) -> Optional[str]:
    """Return why ``phase``'s configuration cannot run ``request.model`` here, or None."""
    from espnet_ros.runtime.config import EngineConfig, EngineConfigError
    from espnet_ros.zoo.registry import get_spec

    backend, mode = PHASE_SETTINGS[phase]
    try:
        EngineConfig(device='cpu', precision='auto', backend=backend, compile_mode=mode,
                     input_size=request.size).resolve(get_spec(request.model))
    except EngineConfigError as error:
        return str(error)
    return None


def run(request: Request, phases: Sequence[str] = PHASES) -> list[dict[str, Any]]:
    """
    Run the phases in order on a fresh cache folder (removed afterwards); return rows.

    A phase that cannot run here gives a row with its name and ``not_run``: the reason.
    """
    import shutil

    root = Path(tempfile.mkdtemp(prefix='espnet_ros_startup_'))
    try:
        rows = []
        for phase in phases:
            reason = unavailable(phase, request)
            rows.append({'phase': phase, 'not_run': reason} if reason
                        else run_phase(phase, request, root))
        return rows
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: Optional[list[str]] = None) -> int:
    """Child entry: ``python -m espnet_ros.tools.startup_bench PHASE REQUEST_JSON STARTED``."""
    phase, request_json, started = (sys.argv[1:] if argv is None else argv)
    fields = json.loads(request_json)
    fields['size'] = tuple(fields['size'])
    print(RESULT_PREFIX + json.dumps(child_main(phase, Request(**fields), float(started))),
          flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
