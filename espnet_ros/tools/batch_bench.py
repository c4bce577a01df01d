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
Several cameras through one engine in-process: one batch of N frames against N single calls.

    python -m espnet_ros.tools.batch_bench --device cuda --cameras 1 2 4 --json OUT.json

The frames are the cameras' frames as the node takes them (decoded images of different
sizes, resized to the network input in the batch); each case runs the same frames both ways
through :func:`~espnet_ros.imaging.pipeline.run_frames`, interleaved so that drift hits both,
and reports frames per second and the batched over single ratio. No ROS: the batching alone,
as ``scripts/gpu_check.sh`` measures it on a GPU (``espnet-ros-live --cameras`` measures the
node over DDS).
"""

import argparse
import json
from pathlib import Path
import statistics
import time
from typing import Optional

from espnet_ros.argument_types import positive_int
from espnet_ros.imaging.codec import DecodedImage
from espnet_ros.imaging.pipeline import OutputRequest, run_frames
from espnet_ros.runtime.engine import probe_frame, SegmentationEngine
from espnet_ros.runtime.options import parse_size
from espnet_ros.zoo.registry import DEFAULT_MODEL

# Camera sizes (width, height) taken in turn: robots mix resolutions.
CAMERA_SIZES = ((1024, 512), (640, 480), (1280, 720), (800, 600))


def camera_frames(count: int) -> list[DecodedImage]:
    """Return ``count`` decoded camera frames of the sizes of CAMERA_SIZES, in turn."""
    return [DecodedImage(probe_frame(*CAMERA_SIZES[index % len(CAMERA_SIZES)]), 'rgb')
            for index in range(count)]


def synchronize(engine: SegmentationEngine) -> None:
    """Wait for the device's queued work (CUDA), so that a time covers it."""
    if engine.device.type == 'cuda':
        import torch
        torch.cuda.synchronize(engine.device)


def measure(engine: SegmentationEngine, cameras: int, repeats: int) -> dict:
    """Return frames per second for ``cameras`` frames batched and one by one."""
    frames = camera_frames(cameras)
    request = OutputRequest()
    single = [[request]] * cameras
    timings: dict[str, list[float]] = {'batched': [], 'one_by_one': []}
    for _ in range(2):  # warm-up: the first calls at a new batch size set things up
        run_frames(engine, frames, [request] * cameras)
        for frame in frames:
            run_frames(engine, [frame], [request])
    for _ in range(repeats):
        synchronize(engine)
        started = time.perf_counter()
        run_frames(engine, frames, [request] * cameras)
        synchronize(engine)
        timings['batched'].append(time.perf_counter() - started)
        started = time.perf_counter()
        for frame, requests in zip(frames, single):
            run_frames(engine, [frame], requests)
        synchronize(engine)
        timings['one_by_one'].append(time.perf_counter() - started)
    fps = {name: cameras / statistics.median(times) for name, times in timings.items()}
    return {'cameras': cameras, 'batched_fps': fps['batched'],
            'one_by_one_fps': fps['one_by_one'],
            'batched_over_one_by_one': fps['batched'] / fps['one_by_one']}


def main(argv: Optional[list[str]] = None) -> int:
    """Measure each camera count; print a table and write JSON."""
    parser = argparse.ArgumentParser(prog='python -m espnet_ros.tools.batch_bench',
                                     description=__doc__.strip().split('\n')[0])
    parser.add_argument('--model', default=DEFAULT_MODEL)
    parser.add_argument('--size', type=parse_size, default=(1024, 512), metavar='WxH',
                        help='network input size (default 1024x512)')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--precision', default='auto')
    parser.add_argument('--cameras', type=positive_int, nargs='+', default=[1, 2, 4])
    parser.add_argument('--repeats', type=positive_int, default=20)
    parser.add_argument('--json', type=Path)
    args = parser.parse_args(argv)
    engine = SegmentationEngine.from_pretrained(args.model, input_size=tuple(args.size),
                                                device=args.device, precision=args.precision)
    rows = [measure(engine, count, args.repeats) for count in args.cameras]
    print(f'{args.model} at {args.size[0]}x{args.size[1]} on {engine.device} '
          f'({engine.precision}, {engine.describe_runner()})')
    print(f'{"cameras":>7} {"batched fps":>11} {"one by one fps":>14} {"ratio":>6}')
    for row in rows:
        print(f'{row["cameras"]:>7} {row["batched_fps"]:>11.2f} {row["one_by_one_fps"]:>14.2f} '
              f'{row["batched_over_one_by_one"]:>6.2f}')
    if args.json:
        args.json.write_text(json.dumps({'model': args.model, 'device': str(engine.device),
                                         'precision': engine.precision,
                                         'size': '{}x{}'.format(*args.size), 'rows': rows},
                                        indent=2) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
