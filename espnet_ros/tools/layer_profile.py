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
Where a frame's time goes, layer by layer: PyTorch's profiler over whole frames.

    python -m espnet_ros.tools.layer_profile --precision mixed --compile-mode jit \
        --size 512x256 --threads 2 --json OUT.json
    python -m espnet_ros.tools.layer_profile --backend onednn --precision mixed \
        --size 512x256 --threads 2

Each row is one operation at one input shape (a convolution, a fused kernel of the compiled
graph, the pre-processing's arithmetic), with its time per frame on the calling thread and
how many times a frame runs it; a frame is :meth:`SegmentationEngine.segment` on a Cityscapes
frame at the camera size. Compiled graphs are built with inductor's kernel profiling, so
that each of its generated kernels is a row of its own rather than one opaque call; the
oneDNN plan, which PyTorch's profiler sees as nothing, times each of its steps itself
(rows 'plan: ...', the same frames run again). Read it before tuning: a ratio says a path
is faster, this says what is left in it.
"""

import argparse
from collections import defaultdict
import json
import os
from pathlib import Path
import time
from typing import Optional

import cv2
import numpy as np

from espnet_ros.argument_types import non_negative_int, positive_int
from espnet_ros.compat import inductor_config_patch
from espnet_ros.imaging.files import camera_rgb
from espnet_ros.runtime.engine import probe_frame
from espnet_ros.runtime.options import Backend, parse_size
from espnet_ros.runtime.process import flush_denormals_in_inference_threads, use_threads
from espnet_ros.tools.procfs import cpu_model, describe_cpu
from espnet_ros.tools.variants import build_engine, Variant
from espnet_ros.zoo import DATA_ENV, DEFAULT_MODEL
from espnet_ros.zoo.registry import get_spec, load

WARM_UP_FRAMES = 10
CAMERA_SIZE = (1024, 512)
MS = 1e3
US_PER_MS = 1e3
# Inductor's switch that wraps each generated kernel in a profiler range.
KERNEL_PROFILE = {'cpp.enable_kernel_profile': True}


def camera_frame(path: Optional[Path]) -> np.ndarray:
    """Return the RGB frame at the camera size: ``path``, else $ESPNET_ROS_DATA's, else a probe."""
    if path is None and os.environ.get(DATA_ENV):
        path = next(iter(sorted((Path(os.environ[DATA_ENV]) / 'cityscapes').glob('*.png'))),
                    None)
    if path is None:
        return probe_frame(*CAMERA_SIZE)
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise SystemExit(f'{path}: not an image OpenCV can read')
    return camera_rgb(bgr, CAMERA_SIZE)


def profile_rows(engine, image: np.ndarray, frames: int) -> tuple[list[dict], float]:
    """Return the operations of ``frames`` frames, slowest first, and the median frame (ms)."""
    from torch.profiler import profile, ProfilerActivity

    times = []
    for _ in range(frames):
        start = time.perf_counter()
        engine.segment(image)
        times.append((time.perf_counter() - start) * MS)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
        for _ in range(frames):
            engine.segment(image)
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for event in profiler.key_averages(group_by_input_shape=True):
        key = (event.key, str(event.input_shapes or ''))
        totals[key][0] += event.self_cpu_time_total / US_PER_MS
        totals[key][1] += event.count
    rows = [{'operation': name, 'input_shapes': shapes,
             'ms_per_frame': total / frames, 'calls_per_frame': count / frames}
            for (name, shapes), (total, count) in totals.items()]
    rows.sort(key=lambda row: row['ms_per_frame'], reverse=True)
    return rows, float(np.median(times))


def plan_rows(engine, image: np.ndarray, frames: int) -> list[dict]:
    """Return the oneDNN plan's steps for ``image`` as rows, each step timed ``frames`` times."""
    batch = engine.preprocess([image])
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for step, milliseconds in engine.runner.network.step_times(batch, frames):
        totals[step][0] += milliseconds
        totals[step][1] += 1
    return [{'operation': f'plan: {step}', 'input_shapes': '', 'ms_per_frame': total,
             'calls_per_frame': count} for step, (total, count) in totals.items()]


def print_table(rows: list[dict], median_ms: float, limit: int) -> None:
    """Print the slowest ``limit`` rows and the share of the frame they take."""
    profiled = sum(row['ms_per_frame'] for row in rows)
    print(f'median frame {median_ms:.2f} ms; operations profiled {profiled:.2f} ms a frame')
    print('| ms/frame | share | calls/frame | operation | input shapes |')
    print('|---:|---:|---:|---|---|')
    for row in rows[:limit]:
        print(f"| {row['ms_per_frame']:.3f} | {row['ms_per_frame'] / profiled:.1%} | "
              f"{row['calls_per_frame']:.0f} | {row['operation'][:70]} | "
              f"{row['input_shapes'][:70]} |")


def main(argv: Optional[list[str]] = None) -> None:
    """Profile one configuration of the engine and print (and save) its slowest operations."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--model', default=DEFAULT_MODEL)
    parser.add_argument('--size', type=parse_size, default=(512, 256), help='network WxH')
    parser.add_argument('--backend', default=Backend.TORCH.value,
                        choices=(Backend.TORCH.value, Backend.ONEDNN.value))
    parser.add_argument('--precision', default='mixed', help='fp32, mixed or bf16')
    parser.add_argument('--compile-mode', default='jit', help='eager or jit')
    parser.add_argument('--threads', type=non_negative_int, default=0,
                        help='0: half the usable cores')
    parser.add_argument('--frames', type=positive_int, default=20)
    parser.add_argument('--rows', type=positive_int, default=25)
    parser.add_argument('--image', type=Path, help=f'default: ${DATA_ENV}/cityscapes/*.png')
    parser.add_argument('--json', type=Path)
    args = parser.parse_args(argv)
    flush_denormals_in_inference_threads()  # as the node and the benchmark run
    threads = use_threads(args.threads)
    spec = get_spec(args.model)
    if args.backend == Backend.ONEDNN:
        variant = Variant(f'onednn plan {args.precision}', 'cpu', args.backend, args.precision)
    else:
        variant = Variant(f'torch {args.precision}, compile_mode {args.compile_mode}', 'cpu',
                          args.backend, args.precision, compile_mode=args.compile_mode)
    image = camera_frame(args.image)
    with inductor_config_patch(**KERNEL_PROFILE):
        engine = build_engine(spec, load(args.model), variant, args.size)
        for _ in range(WARM_UP_FRAMES):  # a compiled graph is built at its first frame
            engine.segment(image)
        rows, median_ms = profile_rows(engine, image, args.frames)
        if args.backend == Backend.ONEDNN:
            rows = sorted(rows + plan_rows(engine, image, args.frames),
                          key=lambda row: row['ms_per_frame'], reverse=True)
    cpu = cpu_model()
    print(f'{args.model} at {args.size[0]}x{args.size[1]}, {variant.label}, {threads} threads, '
          f'{describe_cpu(cpu)}')
    print_table(rows, median_ms, args.rows)
    if args.json:
        args.json.write_text(json.dumps({
            'model': args.model, 'size': list(args.size), 'variant': variant.label,
            'threads': threads, 'cpu': cpu, 'median_frame_ms': median_ms, 'rows': rows},
            indent=1) + '\n')


if __name__ == '__main__':
    main()
