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
With ``--background-load N`` it then keeps N cores busy (processes it starts and ends) and
collects as many frames again, so that quiet and loaded figures come from one run.
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

from espnet_ros.argument_types import non_negative_int, positive_int
from espnet_ros.compat import try_shutdown_ros
from espnet_ros.ros.qos import OUTPUT_QOS
from espnet_ros.runtime.graph_switch import SwitchState
from espnet_ros.runtime.options import (Backend, CompileMode, DEFAULT_THREADS, parse_size,
                                        threads_error)
from espnet_ros.streaming.camera_names import MAX_CAMERAS
from espnet_ros.streaming.diagnostics import (COMPILED_GRAPH_KEY, DROPPED_KEY, MS_PER_S,
                                              PROCESSED_KEY, PROCESSING_MEDIAN_KEY, RECEIVED_KEY,
                                              RUNNER_KEY)
from espnet_ros.streaming.stats import percentile
from espnet_ros.streaming.worker import stamp_ns
from espnet_ros.tools.background_load import BackgroundLoad, load_error
from espnet_ros.tools.multi_camera_bench import run_cameras
from espnet_ros.zoo.registry import DEFAULT_MODEL

STARTUP_TIMEOUT_S = 120.0
# The module each node executable runs (the console scripts of setup.py).
NODE_MODULES = {'segmenter': 'espnet_ros.ros.segmenter_main',
                'image_player': 'espnet_ros.ros.image_player'}
STOP_TIMEOUT_S = 5.0
SETTLE_TIMEOUT_S = 1800.0  # a first compile on a busy machine
# The node's 'compiled graph' diagnostics while its runner may still change.
UNSETTLED = (f'{SwitchState.LOOKING.value}:', f'{SwitchState.BUILDING.value}:')
COUNT_KEYS = (RECEIVED_KEY, PROCESSED_KEY, DROPPED_KEY)


class Probe(Node):
    """Subscribes to labels, overlay and diagnostics; records latency, keeps overlays."""

    def __init__(self, namespace: str, keep_overlays: int) -> None:
        super().__init__('live_probe', namespace=namespace)
        self.latencies_ms: list[float] = []
        self.arrivals: list[float] = []
        self.overlays: list[np.ndarray] = []
        self.node_processing_ms = float('nan')  # as the segmenter's diagnostics last said
        self.node_counts: dict[str, int] = {}  # frames received, processed, dropped: likewise
        self.runner = ''          # what runs the node's frames, as its diagnostics last said
        self.compiled_graph = ''  # where its move to a compiled graph stands: likewise
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
                self.runner = values.get(RUNNER_KEY, self.runner)
                self.compiled_graph = values.get(COMPILED_GRAPH_KEY, self.compiled_graph)
                if PROCESSING_MEDIAN_KEY in values:
                    self.node_processing_ms = float(values[PROCESSING_MEDIAN_KEY])
                self.node_counts.update({key: int(values[key]) for key in COUNT_KEYS
                                         if key in values})

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
    command = [sys.executable, '-m', NODE_MODULES[executable], '--ros-args']
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


def window_counts(before: dict[str, int], after: dict[str, int]) -> dict[str, Optional[int]]:
    """
    Return the node's frames received, processed and dropped between two of its reports.

    Its diagnostics count from the node's start, eager frames before a compiled graph
    included; a window's own counts are what matters for keeping up on the runner measured.
    None where a count is unknown.
    """
    return {key: (after[key] - before.get(key, 0)) if key in after else None
            for key in COUNT_KEYS}


def summary(probe: Probe, start: int, end: Optional[int] = None,
            counts_before: Optional[dict[str, int]] = None) -> dict:
    """
    Return frames, rate and latency figures of the frames ``start`` to ``end``.

    The node's frame counts are those since ``counts_before`` (its counts when the window
    began), or since its start without it.
    """
    latencies = probe.latencies_ms[start:end]
    arrivals = probe.arrivals[start:end]
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float('nan')
    counts = window_counts(counts_before or {}, probe.node_counts)
    return {
        'frames': len(latencies),
        'rate_hz': (len(arrivals) - 1) / span if len(arrivals) > 1 else 0.0,
        'latency_median_ms': statistics.median(latencies),
        'latency_p99_ms': percentile(latencies, 99),
        'latency_max_ms': max(latencies),
        'node_processing_median_ms': probe.node_processing_ms,
        'node_frames_received': counts[RECEIVED_KEY],
        'node_frames_processed': counts[PROCESSED_KEY],
        'node_frames_dropped': counts[DROPPED_KEY],
    }


def drop_line(results: dict) -> str:
    """Return what the node did with the camera's frames while measured (its diagnostics)."""
    if results['node_frames_received'] is None:
        return 'no diagnostics from the segmenter arrived: its frame counts are unknown'
    dropped, received = results['node_frames_dropped'], results['node_frames_received']
    line = (f'the node took {received} camera frames, processed '
            f'{results["node_frames_processed"]} and dropped {dropped} '
            f'({dropped / max(received, 1):.0%}) because a newer frame arrived first')
    rate = results.get('camera_rate_hz')
    if dropped and rate:
        # Said, so that a user does not take the drops for a fault: they are the design.
        work_ms = results.get('node_processing_median_ms', math.nan)
        if work_ms < MS_PER_S / rate:
            line += (f': its median work on a frame ({work_ms:.1f} ms) is shorter than the '
                     f"camera's period ({MS_PER_S / rate:g} ms), so these frames arrived while "
                     'it was still busy with a slower frame or with one that came close before')
        elif not math.isnan(work_ms):
            line += f': the player sends {rate:g} Hz, faster than this machine segments'
        line += (', and the node keeps only the newest frame by design (no queue: the labels '
                 'describe the scene as it is now)')
    return line


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog='espnet-ros-live', description=__doc__.split('\n')[0])
    parser.add_argument('--source', type=Path, required=True,
                        help='folder of images or a video for the player')
    parser.add_argument('--model', default=DEFAULT_MODEL)
    parser.add_argument('--frames', type=positive_int, default=60,
                        help='labelled frames to collect')
    parser.add_argument('--rate', type=float, default=10.0, help='camera rate (Hz)')
    parser.add_argument('--camera-size', type=parse_size, default=(0, 0), metavar='WxH',
                        help='resize the frames the player publishes (default: as stored)')
    parser.add_argument('--size', type=parse_size, default=(0, 0), metavar='WxH',
                        help="the node's network input size (default: the model's training "
                             'size)')
    parser.add_argument('--warmup', type=non_negative_int, default=3,
                        help='first frames left out of figures')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--precision', default='auto')
    parser.add_argument('--backend', choices=Backend.values(),
                        help="the node's backend parameter (default: its own default)")
    parser.add_argument('--transport', default='raw', choices=('raw', 'compressed'))
    parser.add_argument('--out', type=Path, help='save a few overlays here')
    parser.add_argument('--save', type=non_negative_int, default=3, help='overlays to save')
    parser.add_argument('--json', type=Path, help='write the figures here')
    parser.add_argument('--namespace', default='/live')
    parser.add_argument('--threads', type=int, default=DEFAULT_THREADS,
                        help="the node's threads parameter (default 0: its own choice)")
    parser.add_argument('--compile-mode', choices=CompileMode.values(),
                        help="the node's compile_mode parameter (default: its own default)")
    parser.add_argument('--wait-compiled', action='store_true',
                        help='count frames only once the node has settled on its runner '
                             '(the compiled graph loaded or built, or eager for good)')
    parser.add_argument('--background-load', type=int, default=0, metavar='N',
                        help='after the quiet frames, keep N cores busy (processes this tool '
                             'starts and ends) and collect as many frames again')
    parser.add_argument('--cameras', type=int, default=0, metavar='N',
                        help='N cameras at --rate Hz each: compare one node serving them '
                             'batched, the same with max_batch 1, and N separate nodes '
                             '(compile_mode eager unless --compile-mode)')
    parser.add_argument('--seconds', type=float, default=30.0,
                        help='with --cameras: the measuring window of each set-up')
    parser.add_argument('--compare-engine', action='store_true',
                        help='afterwards, time the same per-frame work in-process and report '
                             'the node latency as a multiple of it')
    args = parser.parse_args(argv)
    reason = load_error(args.background_load) or threads_error(args.threads) or (
        f'--cameras must be 0 (one camera) to {MAX_CAMERAS}; got {args.cameras}'
        if not 0 <= args.cameras <= MAX_CAMERAS else None)
    if reason:
        parser.error(reason)
    return args


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
    from espnet_ros.runtime.process import flush_denormals_in_inference_threads, use_threads

    use_threads(args.threads)  # as the node does
    flush_denormals_in_inference_threads()  # so does this: the live tool's own process
    engine = SegmentationEngine.from_pretrained(args.model, device=args.device,
                                                precision=args.precision,
                                                **({'backend': args.backend} if args.backend
                                                   else {}),
                                                input_size=tuple(args.size) if all(args.size)
                                                else None)
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
    with BackgroundLoad(args.background_load) as background:
        if args.cameras:
            return run_cameras(args, background, node_command, stop)
        return run(args, background)


def collect(probe: Probe, wanted: int, nodes: Sequence[subprocess.Popen]) -> bool:
    """Spin the probe until it has ``wanted`` labels; False if a node ended or none came."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while len(probe.latencies_ms) < wanted:
        if any(node.poll() is not None for node in nodes):
            print('espnet-ros-live: a node exited early (see its log above)', file=sys.stderr)
            return False
        if not probe.latencies_ms and time.monotonic() > deadline:
            print(f'espnet-ros-live: no labels within {STARTUP_TIMEOUT_S:.0f} s',
                  file=sys.stderr)
            return False
        rclpy.spin_once(probe, timeout_sec=0.1)
    return True


def settle(probe: Probe, nodes: Sequence[subprocess.Popen]) -> bool:
    """Spin until the node's diagnostics say its runner is final; False if a node ended."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while not probe.compiled_graph or probe.compiled_graph.startswith(UNSETTLED):
        if any(node.poll() is not None for node in nodes) or time.monotonic() > deadline:
            print('espnet-ros-live: the node did not settle on its runner '
                  f'({probe.compiled_graph or "no diagnostics"})', file=sys.stderr)
            return False
        rclpy.spin_once(probe, timeout_sec=0.1)
    print(f'espnet-ros-live: the node runs {probe.runner} ({probe.compiled_graph})')
    return True


def load_ratios(quiet: dict, loaded: dict) -> dict:
    """Return the loaded latency median and p99 as multiples of the quiet median."""
    return {'loaded_over_quiet': loaded['latency_median_ms'] / quiet['latency_median_ms'],
            'loaded_p99_over_quiet_median': (loaded['latency_p99_ms']
                                             / quiet['latency_median_ms'])}


def run(args: argparse.Namespace, background: BackgroundLoad) -> int:
    """Run the player, the node and the probe, quiet then loaded; print and save results."""
    player = subprocess.Popen(node_command('image_player', args.namespace, {
        'source': str(args.source.resolve()), 'rate': float(args.rate),
        'transport': args.transport, 'width': args.camera_size[0],
        'height': args.camera_size[1]}))
    segmenter = subprocess.Popen(node_command('segmenter', args.namespace, {
        'model': args.model, 'device': args.device, 'precision': args.precision,
        'input_transport': args.transport, 'input_width': args.size[0],
        'input_height': args.size[1],
        **({'threads': args.threads} if args.threads != DEFAULT_THREADS else {}),
        **({'backend': args.backend} if args.backend else {}),
        **({'compile_mode': args.compile_mode} if args.compile_mode else {})}))
    rclpy.init()
    probe = Probe(args.namespace, args.save if args.out else 0)
    quiet_end = args.frames + args.warmup
    counts_at_start: dict[str, int] = {}
    try:
        if args.wait_compiled:
            if not settle(probe, (segmenter, player)):
                return 1
            probe.latencies_ms.clear()
            probe.arrivals.clear()
            # Frames dropped while the node served eager before its graph are not counted.
            counts_at_start = dict(probe.node_counts)
        if not collect(probe, quiet_end, (segmenter, player)):
            return 1
        quiet_processing_ms = probe.node_processing_ms  # the diagnostics' figure so far
        quiet_runner = probe.runner
        quiet = summary(probe, args.warmup, quiet_end, counts_at_start)
        if background.cores:
            # The first frames under load (the warm-up count again) are left out.
            counts_at_load = dict(probe.node_counts)
            background.busy()
            if not collect(probe, 2 * quiet_end, (segmenter, player)):
                return 1
    finally:
        background.close()
        stop(segmenter)
        stop(player)
    results = {'model': args.model, 'camera_rate_hz': args.rate, 'transport': args.transport,
               'network_size': '{}x{}'.format(*args.size) if all(args.size) else 'training',
               'source': str(args.source), 'threads': args.threads,
               **quiet,
               'node_processing_median_ms': quiet_processing_ms, 'runner': quiet_runner,
               'compiled_graph': probe.compiled_graph}
    if background.cores:
        results['loaded'] = {'background_load': background.cores, 'runner': probe.runner,
                             **summary(probe, quiet_end + args.warmup,
                                       counts_before=counts_at_load)}
        results.update(load_ratios(results, results['loaded']))
    probe.destroy_node()
    try_shutdown_ros()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for index, rgb in enumerate(probe.overlays):
            cv2.imwrite(str(args.out / f'overlay_{index:02d}.png'),
                        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    print(f'{results["frames"]} frames of {args.model} from {args.source} at '
          f'{args.rate:g} Hz: processed {results["rate_hz"]:.2f} Hz, latency stamp->labels '
          f'median {results["latency_median_ms"]:.1f} ms, p99 {results["latency_p99_ms"]:.1f}'
          f' ms' + (f'; overlays in {args.out}' if args.out else ''))
    if 'loaded' in results:
        loaded = results['loaded']
        print(f'with {background.cores} busy cores: processed {loaded["rate_hz"]:.2f} Hz, '
              f'latency median {loaded["latency_median_ms"]:.1f} ms '
              f'({results["loaded_over_quiet"]:.2f}x quiet), p99 '
              f'{loaded["latency_p99_ms"]:.1f} ms ({results["loaded_p99_over_quiet_median"]:.2f}x '
              'the quiet median)')
    if math.isfinite(results['node_processing_median_ms']):
        results['latency_over_processing'] = (results['latency_median_ms']
                                              / results['node_processing_median_ms'])
        print(f"the node's own per-frame work (decoding to publishing, from its diagnostics) "
              f'{results["node_processing_median_ms"]:.1f} ms: latency is '
              f'{results["latency_over_processing"]:.2f}x that')
    else:
        print('no diagnostics from the segmenter arrived: its own per-frame time is unknown')
    print(drop_line(results))
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
