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
``espnet-ros-live``: the player and the segmenter as processes, measured over DDS.

It starts ``image_player`` and ``segmenter`` as separate processes (what the demo launch
file does), subscribes to the outputs with a probe node, and reports frames, rates and the
latency from the camera stamp to the labels' arrival. It saves a few overlays, and can
write the figures as JSON. It is the README's main job and the end-to-end benchmark.
"""

import argparse
import json
import math
import os
from pathlib import Path
import signal
import statistics
import subprocess
import sys
import time
from typing import Any, Optional, Sequence

import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import Image

from espnet_ros.ros.qos import OUTPUT_QOS
from espnet_ros.runtime.options import parse_size
from espnet_ros.streaming.diagnostics import PROCESSING_MEDIAN_KEY
from espnet_ros.streaming.stats import percentile
from espnet_ros.streaming.worker import stamp_ns
from espnet_ros.zoo.registry import DEFAULT_MODEL

STARTUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 5.0


class Probe(Node):
    """Subscribes to labels, overlay and diagnostics; records latency, keeps overlays."""

    def __init__(self, namespace: str, keep_overlays: int) -> None:
        super().__init__('live_probe', namespace=namespace)
        self.latencies_ms: list[float] = []
        self.arrivals: list[float] = []
        self.overlays: list[np.ndarray] = []
        self.node_processing_ms = float('nan')  # as the segmenter's diagnostics last said
        self.keep_overlays = keep_overlays
        self.create_subscription(Image, 'segmentation/labels', self._on_labels, OUTPUT_QOS)
        self.create_subscription(Image, 'segmentation/overlay', self._on_overlay, OUTPUT_QOS)
        # Subscribed so that the node renders what the in-process comparison renders.
        self.create_subscription(Image, 'segmentation/color', lambda _: None, OUTPUT_QOS)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)

    def _on_labels(self, message: Image) -> None:
        now = self.get_clock().now().nanoseconds
        self.latencies_ms.append((now - stamp_ns(message.header)) / 1e6)
        self.arrivals.append(time.monotonic())

    def _on_diagnostics(self, message: DiagnosticArray) -> None:
        for status in message.status:
            if status.hardware_id == f'{self.get_namespace().rstrip("/")}/segmenter':
                values = {pair.key: pair.value for pair in status.values}
                if PROCESSING_MEDIAN_KEY in values:
                    self.node_processing_ms = float(values[PROCESSING_MEDIAN_KEY])

    def _on_overlay(self, message: Image) -> None:
        if len(self.overlays) < self.keep_overlays:
            rgb = np.frombuffer(message.data, np.uint8).reshape(message.height, message.width, 3)
            self.overlays.append(rgb.copy())


def parameter_text(value: Any) -> str:
    """Return ``value`` as the YAML text of a ``-p name:=value`` argument, type preserved."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float):
        text = repr(value)
        if '.' not in text or 'e' in text:
            raise ValueError(f'{value} would not read back as a ROS double')
        return text
    if value == '':
        return "''"
    return str(value)


def node_command(executable: str, namespace: str, parameters: dict, *,
                 remaps: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Return the command line that starts one of our nodes with parameters and remaps."""
    command = [sys.executable, '-m', f'espnet_ros.ros.{executable}', '--ros-args']
    if namespace:
        command += ['-r', f'__ns:={namespace}']
    for source, target in remaps:
        command += ['-r', f'{source}:={target}']
    for name, value in parameters.items():
        command += ['-p', f'{name}:={parameter_text(value)}']
    return command


def stop(process: subprocess.Popen, timeout_s: float = STOP_TIMEOUT_S) -> Optional[int]:
    """Interrupt a node like Ctrl-C would, kill it if it hangs; return its exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def summary(probe: Probe, warmup: int) -> dict:
    """Return frames, rate and latency figures, leaving out the first ``warmup`` frames."""
    latencies = probe.latencies_ms[warmup:]
    arrivals = probe.arrivals[warmup:]
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float('nan')
    return {
        'frames': len(latencies),
        'rate_hz': (len(arrivals) - 1) / span if len(arrivals) > 1 else 0.0,
        'latency_median_ms': statistics.median(latencies),
        'latency_p99_ms': percentile(latencies, 99),
        'latency_max_ms': max(latencies),
        'node_processing_median_ms': probe.node_processing_ms,
    }


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog='espnet-ros-live', description=__doc__.split('\n')[0])
    parser.add_argument('--source', type=Path, required=True,
                        help='folder of images or a video for the player')
    parser.add_argument('--model', default=DEFAULT_MODEL)
    parser.add_argument('--frames', type=int, default=60, help='labelled frames to collect')
    parser.add_argument('--rate', type=float, default=10.0, help='camera rate (Hz)')
    parser.add_argument('--camera-size', type=parse_size, default=(0, 0), metavar='WxH',
                        help='resize the frames the player publishes (default: as stored)')
    parser.add_argument('--warmup', type=int, default=3, help='first frames left out of figures')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--precision', default='auto')
    parser.add_argument('--transport', default='raw', choices=('raw', 'compressed'))
    parser.add_argument('--out', type=Path, help='save a few overlays here')
    parser.add_argument('--save', type=int, default=3, help='overlays to save')
    parser.add_argument('--json', type=Path, help='write the figures here')
    parser.add_argument('--namespace', default='/live')
    parser.add_argument('--compare-engine', action='store_true',
                        help='afterwards, time the same per-frame work in-process and report '
                             'the node latency as a multiple of it')
    return parser.parse_args(argv)


def engine_frame_ms(args: argparse.Namespace, repeats: int) -> dict[str, float]:
    """
    Return median in-process times of the node's per-frame work on the same frames.

    ``paced``: one frame per camera period, as the node gets them: between frames the CPU
    and the math library's worker threads go idle, and the next frame starts cold.
    ``back_to_back``: no pause. On the 2-core CPU at 1024x512 the two differed by -3% to +8%
    in three runs, less than the machine's drift between runs.
    """
    from espnet_ros.tools.variants import camera_message, frame_path
    from espnet_ros.imaging.files import list_images, read_bgr
    from espnet_ros.runtime.engine import SegmentationEngine

    engine = SegmentationEngine.from_pretrained(args.model, device=args.device,
                                                precision=args.precision)
    frames = [read_bgr(path) for path in list_images([args.source])[:repeats]]
    messages = [camera_message(frame, tuple(args.camera_size) if all(args.camera_size)
                               else frame.shape[1::-1]) for frame in frames]
    frame_path(engine, messages[0])
    medians = {}
    for pacing, period_s in (('back_to_back', 0.0), ('paced', 1.0 / args.rate)):
        times = []
        for index in range(repeats):
            started = time.perf_counter()
            frame_path(engine, messages[index % len(messages)])
            times.append(time.perf_counter() - started)
            time.sleep(max(0.0, period_s - times[-1]))
        medians[pacing] = 1000 * statistics.median(times)
    return medians


def main(argv: Optional[list[str]] = None) -> int:
    """Run the player, the node and the probe; print and save the results."""
    args = parse_args(argv)
    player = subprocess.Popen(node_command('image_player', args.namespace, {
        'source': str(args.source.resolve()), 'rate': float(args.rate),
        'transport': args.transport, 'width': args.camera_size[0],
        'height': args.camera_size[1]}))
    segmenter = subprocess.Popen(node_command('segmenter', args.namespace, {
        'model': args.model, 'device': args.device, 'precision': args.precision,
        'input_transport': args.transport}))
    rclpy.init()
    probe = Probe(args.namespace, args.save if args.out else 0)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        wanted = args.frames + args.warmup
        while len(probe.latencies_ms) < wanted:
            if segmenter.poll() is not None or player.poll() is not None:
                print('espnet-ros-live: a node exited early (see its log above)', file=sys.stderr)
                return 1
            if not probe.latencies_ms and time.monotonic() > deadline:
                print(f'espnet-ros-live: no labels within {STARTUP_TIMEOUT_S:.0f} s',
                      file=sys.stderr)
                return 1
            rclpy.spin_once(probe, timeout_sec=0.1)
    finally:
        stop(segmenter)
        stop(player)
    results = {'model': args.model, 'camera_rate_hz': args.rate, 'transport': args.transport,
               'source': str(args.source), **summary(probe, args.warmup)}
    probe.destroy_node()
    rclpy.try_shutdown()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for index, rgb in enumerate(probe.overlays):
            cv2.imwrite(str(args.out / f'overlay_{index:02d}.png'),
                        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    print(f'{results["frames"]} frames of {args.model} from {args.source} at '
          f'{args.rate:g} Hz: processed {results["rate_hz"]:.2f} Hz, latency stamp->labels '
          f'median {results["latency_median_ms"]:.1f} ms, p99 {results["latency_p99_ms"]:.1f}'
          f' ms' + (f'; overlays in {args.out}' if args.out else ''))
    if math.isfinite(results['node_processing_median_ms']):
        results['latency_over_processing'] = (results['latency_median_ms']
                                              / results['node_processing_median_ms'])
        print(f"the node's own per-frame work (decoding to publishing, from its diagnostics) "
              f'{results["node_processing_median_ms"]:.1f} ms: latency is '
              f'{results["latency_over_processing"]:.2f}x that')
    else:
        print('no diagnostics from the segmenter arrived: its own per-frame time is unknown')
    if args.compare_engine:
        engine_ms = engine_frame_ms(args, max(10, args.frames // 2))
        results['engine_frame_median_ms'] = engine_ms['paced']
        results['engine_back_to_back_median_ms'] = engine_ms['back_to_back']
        results['node_over_engine'] = results['latency_median_ms'] / engine_ms['paced']
        print(f'in-process per-frame work, one frame per camera period: '
              f'{engine_ms["paced"]:.1f} ms (back to back: {engine_ms["back_to_back"]:.1f} '
              f'ms): node latency over DDS is {results["node_over_engine"]:.2f}x that')
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    os.environ.setdefault('PYTHONUNBUFFERED', '1')
    sys.exit(main())
