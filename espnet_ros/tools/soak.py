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
``espnet-ros-soak``: a long run of the segmenter, watching its memory, threads and latency.

It starts the segmenter as its own process and feeds it frames as fast as it takes them: the
next frame goes out when the labels of the previous one arrive. Every few frames it reads the
node's resident memory and thread count from ``/proc`` beside the latency from publishing to
the labels' arrival, and prints a table. The verdict: after the warm-up, memory grows by less
than a bound, the thread count stays put and latency does not drift. Exit status 1 if not.
"""

import argparse
from dataclasses import asdict, dataclass
import json
import math
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from espnet_ros.argument_types import int_at_least, positive_int
from espnet_ros.compat import try_shutdown_ros
from espnet_ros.imaging.codec import encode_rgb8
from espnet_ros.imaging.outputs import OUTPUT_TOPICS
from espnet_ros.ros.messages import image_message
from espnet_ros.ros.qos import OUTPUT_QOS
from espnet_ros.runtime.options import IMAGE_OUTPUTS, Output, parse_size
from espnet_ros.streaming.stats import percentile
from espnet_ros.streaming.worker import stamp_ns
from espnet_ros.tools import procfs
from espnet_ros.tools.live_run import node_command, stop

STARTUP_TIMEOUT_S = 180.0
SPIN_STEP_S = 0.01
MAX_LOST_FRACTION = 0.01  # of the frames fed
MIN_FRAMES = 10  # fewer leave no early and late frames to compare after the warm-up
THREAD_SLACK = 2   # an executor may start a worker thread late; a leak adds one per frame


@dataclass(frozen=True)
class Sample:
    """One row of the table: the node's state after ``frames`` frames."""

    frames: int
    elapsed_s: float
    rss_mb: float
    threads: int
    latency_median_ms: float
    latency_p95_ms: float
    rate_hz: float
    node_cpu_ms_per_frame: float
    lost: int


def process_status(pid: int) -> tuple[float, int, float]:
    """Return resident memory (MB), thread count and CPU time (s) of ``pid`` from /proc."""
    fields = procfs.status_fields(pid)
    return (int(fields['VmRSS'][0]) / procfs.KIB_PER_MB, int(fields['Threads'][0]),
            procfs.cpu_seconds(pid))


def camera_pattern(width: int, height: int) -> np.ndarray:
    """Return an RGB frame with gradients and edges, so the network sees several classes."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.dstack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                     ((x // 16 + y // 16) % 2) * 200 + 30])
    return rgb.astype(np.uint8)


class Feeder(Node):
    """Publishes one frame at a time and times its labels."""

    def __init__(self, namespace: str, outputs: list[Output],
                 camera_size: tuple[int, int]) -> None:
        super().__init__('soak_feeder', namespace=namespace)
        self.camera = self.create_publisher(Image, 'image', qos_profile_sensor_data)
        self.arrived: dict[int, int] = {}
        for output in outputs:
            callback = self._on_labels if output is Output.LABELS else (lambda message: None)
            self.create_subscription(Image, OUTPUT_TOPICS[output], callback, OUTPUT_QOS)
        rgb = camera_pattern(*camera_size)
        self.frame = image_message(Header(frame_id='soak_camera'), encode_rgb8(rgb),
                                   rgb.shape[0], rgb.shape[1])

    def _on_labels(self, message: Image) -> None:
        self.arrived[stamp_ns(message.header)] = time.time_ns()

    def send(self) -> int:
        """Publish the frame stamped now; return the stamp."""
        stamp = time.time_ns()
        self.frame.header.stamp.sec, self.frame.header.stamp.nanosec = divmod(stamp,
                                                                              1_000_000_000)
        self.camera.publish(self.frame)
        return stamp


def verdict(samples: list[Sample], latencies: list[float], args: argparse.Namespace) -> dict:
    """Judge memory, threads and latency after the warm-up; return the figures and 'passed'."""
    if not samples:
        return {'frames': len(latencies), 'passed': False}
    warmup = math.ceil(len(latencies) * args.warmup_fraction)
    after = [sample for sample in samples if sample.frames >= warmup] or samples[-1:]
    base = after[0]
    timed = [value for value in latencies if not math.isnan(value)]
    tenth = max(len(timed) // 10, 1)
    early = statistics.median(timed[tenth:2 * tenth]) if len(timed) >= 3 else math.nan
    late = statistics.median(timed[-tenth:]) if timed else math.nan
    growth = max(sample.rss_mb for sample in after) - base.rss_mb
    thread_growth = max(sample.threads for sample in after) - base.threads
    lost = samples[-1].lost
    result = {
        'frames': len(latencies),
        'warmup_frames': warmup,
        'rss_after_warmup_mb': round(base.rss_mb, 1),
        'rss_final_mb': round(samples[-1].rss_mb, 1),
        'rss_growth_mb': round(growth, 1),
        'threads_after_warmup': base.threads,
        'threads_growth': thread_growth,
        'latency_early_median_ms': round(early, 2),
        'latency_late_median_ms': round(late, 2),
        'latency_drift_ratio': round(late / early, 3) if early else math.nan,
        'latency_p99_ms': round(percentile(timed, 99), 2),
        'lost_frames': lost,
        'memory_ok': growth < args.max_growth_mb,
        'threads_ok': thread_growth <= THREAD_SLACK,
        'latency_ok': late <= early * args.max_drift + args.drift_slack_ms,
        'frames_ok': lost <= MAX_LOST_FRACTION * len(latencies),
    }
    checks = ('memory_ok', 'threads_ok', 'latency_ok', 'frames_ok')
    result['passed'] = all(result[key] for key in checks)
    return result


def failures(result: dict, args: argparse.Namespace) -> list[str]:
    """Return one phrase per failed check of ``result``: what it measured and by how much."""
    found = []
    if not result['memory_ok']:
        found.append(f'memory grew {result["rss_growth_mb"]} MB after the warm-up, '
                     f'{result["rss_growth_mb"] - args.max_growth_mb:.1f} MB over the limit '
                     f'of {args.max_growth_mb:g} MB')
    if not result['threads_ok']:
        over = result['threads_growth'] - THREAD_SLACK
        found.append(f'threads grew by {result["threads_growth"]}, {over} over the '
                     f'{THREAD_SLACK} allowed')
    if not result['latency_ok']:
        limit = result['latency_early_median_ms'] * args.max_drift + args.drift_slack_ms
        found.append(f'median latency went from {result["latency_early_median_ms"]} to '
                     f'{result["latency_late_median_ms"]} ms, '
                     f'{result["latency_late_median_ms"] - limit:.2f} ms over the limit of '
                     f'{limit:.2f} ms ({args.max_drift:g}x + {args.drift_slack_ms:g} ms)')
    if not result['frames_ok']:
        allowed = MAX_LOST_FRACTION * result['frames']
        found.append(f'{result["lost_frames"]} of {result["frames"]} frames lost, '
                     f'{result["lost_frames"] - allowed:.0f} more than the {allowed:.0f} '
                     f'({MAX_LOST_FRACTION:.0%}) allowed')
    if not result.get('exit_ok', True):
        found.append(f'the node exited with status {result["node_exit_status"]}, not 0')
    return found


def verdict_line(result: dict, args: argparse.Namespace) -> str:
    """Return the last line of a soak: PASSED with the figures, or FAILED naming each check."""
    failed = failures(result, args)
    if failed:
        return 'soak FAILED: ' + '; '.join(failed)
    return (f'soak PASSED: memory growth after warm-up {result["rss_growth_mb"]} MB (limit '
            f'{args.max_growth_mb:g}), threads +{result["threads_growth"]}, latency median '
            f'{result["latency_early_median_ms"]} -> {result["latency_late_median_ms"]} ms, '
            f'{result["lost_frames"]} frames lost')


def print_row(sample: Sample) -> None:
    """Print one row of the table."""
    print(f'{sample.frames:>8} {sample.elapsed_s:>8.1f} {sample.rss_mb:>8.1f} '
          f'{sample.threads:>7} {sample.latency_median_ms:>9.2f} {sample.latency_p95_ms:>9.2f} '
          f'{sample.rate_hz:>7.1f} {sample.node_cpu_ms_per_frame:>8.1f} {sample.lost:>5}',
          flush=True)


def run(args: argparse.Namespace, node_pid: int, feeder: Feeder, executor: Any,
        alive: Any) -> tuple[list[Sample], list[float]]:
    """
    Feed ``args.frames`` frames in lock step; return the samples and per-frame latencies.

    Ctrl-C ends the run early; the frames fed so far are judged.
    """
    latencies: list[float] = []
    samples: list[Sample] = []
    lost = 0
    started = block_start = time.monotonic()
    block_cpu_s = process_status(node_pid)[2]
    print(f'{"frames":>8} {"time s":>8} {"RSS MB":>8} {"threads":>7} {"lat p50":>9} '
          f'{"lat p95":>9} {"fps":>7} {"cpu ms":>8} {"lost":>5}')
    try:
        for index in range(1, args.frames + 1):
            stamp = feeder.send()
            deadline = time.monotonic() + args.frame_timeout_s
            while stamp not in feeder.arrived and time.monotonic() < deadline:
                executor.spin_once(timeout_sec=SPIN_STEP_S)
                if not alive():
                    raise RuntimeError('the segmenter exited during the soak')
            arrival = feeder.arrived.pop(stamp, None)
            feeder.arrived.clear()
            lost += arrival is None
            latencies.append(math.nan if arrival is None else (arrival - stamp) / 1e6)
            if index % args.report_every == 0 or index == args.frames:
                now = time.monotonic()
                count = index - (samples[-1].frames if samples else 0)
                block = [v for v in latencies[-count:] if not math.isnan(v)]
                rss_mb, threads, cpu_s = process_status(node_pid)
                samples.append(Sample(
                    index, round(now - started, 2), round(rss_mb, 1), threads,
                    round(percentile(block, 50), 2), round(percentile(block, 95), 2),
                    round(len(block) / max(now - block_start, 1e-9), 2),
                    round(1000 * (cpu_s - block_cpu_s) / count, 2), lost))
                block_start, block_cpu_s = now, cpu_s
                print_row(samples[-1])
    except (KeyboardInterrupt, ExternalShutdownException):
        print(f'interrupted after {len(latencies)} frames', flush=True)
        del latencies[samples[-1].frames if samples else 0:]
    return samples, latencies


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog='espnet-ros-soak', description=__doc__.split('\n')[0])
    parser.add_argument('--frames', type=int_at_least(MIN_FRAMES), default=20000,
                        help='frames to feed')
    parser.add_argument('--model', default='espnet_p2q3_cityscapes')
    parser.add_argument('--size', type=parse_size, default=(512, 256), metavar='WxH',
                        help='network input WxH')
    parser.add_argument('--camera-size', type=parse_size, default=(640, 480), metavar='WxH',
                        help='camera frame WxH')
    parser.add_argument('--device', default='auto')
    parser.add_argument('--precision', default='auto')
    parser.add_argument('--backend', default='auto')
    parser.add_argument('--outputs', default=','.join(IMAGE_OUTPUTS[:3]),
                        help=f"outputs to subscribe to, from {','.join(IMAGE_OUTPUTS)} (the "
                             'node renders only those)')
    parser.add_argument('--report-every', type=positive_int, help='frames per table row (default: '
                        'a twentieth of --frames)')
    parser.add_argument('--warmup-fraction', type=float, default=0.1)
    parser.add_argument('--max-growth-mb', type=float, default=50.0,
                        help='most RSS growth after the warm-up')
    parser.add_argument('--max-drift', type=float, default=1.5,
                        help='most ratio of late to early median latency')
    parser.add_argument('--drift-slack-ms', type=float, default=5.0,
                        help='latency drift allowed on top of the ratio')
    parser.add_argument('--frame-timeout-s', type=float, default=5.0,
                        help='a frame whose labels take longer counts as lost')
    parser.add_argument('--namespace', default='/soak')
    parser.add_argument('--log', type=Path, help="write the node's output here")
    parser.add_argument('--json', type=Path, help='write the samples and verdict here')
    args = parser.parse_args(argv)
    unknown = sorted({name for name in args.outputs.split(',') if name} - set(IMAGE_OUTPUTS))
    if unknown:
        parser.error(f"unknown outputs {', '.join(unknown)}; choose from "
                     f"{', '.join(IMAGE_OUTPUTS)}")
    args.report_every = args.report_every or max(args.frames // 20, 1)
    return args


def main(argv: Optional[list[str]] = None) -> int:
    """Run the soak; print the table and the verdict; 0 passed, 1 failed, 2 did not run."""
    args = parse_args(argv)
    outputs = [Output(name) for name in args.outputs.split(',') if name]
    if Output.LABELS not in outputs:
        outputs.insert(0, Output.LABELS)
    log_path = args.log or Path(tempfile.mkdtemp(prefix='espnet_ros_soak_')) / 'segmenter.log'
    command = node_command('segmenter', args.namespace, {
        'model': args.model, 'input_width': args.size[0], 'input_height': args.size[1],
        'device': args.device, 'precision': args.precision, 'backend': args.backend})
    with open(log_path, 'w') as log:
        segmenter = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    rclpy.init()
    feeder = Feeder(args.namespace, outputs, args.camera_size)
    executor = SingleThreadedExecutor()
    executor.add_node(feeder)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        # Until a first frame comes back labelled, the topics may not all be matched yet.
        while not feeder.arrived:
            if segmenter.poll() is not None or time.monotonic() > deadline:
                print(f'espnet-ros-soak: the segmenter did not start; its log ({log_path}):\n'
                      + log_path.read_text()[-4000:], file=sys.stderr)
                return 2
            if feeder.camera.get_subscription_count():
                feeder.send()
            executor.spin_once(timeout_sec=0.5)
        feeder.arrived.clear()
        print(f'soak: {args.frames} frames of {args.camera_size[0]}x{args.camera_size[1]} '
              f'to {args.model} at {args.size[0]}x{args.size[1]} on {args.device}, outputs '
              f'{",".join(outputs)}; node pid {segmenter.pid}, log {log_path}', flush=True)
        try:
            samples, latencies = run(args, segmenter.pid, feeder, executor,
                                     lambda: segmenter.poll() is None)
        except RuntimeError as error:
            print(f'espnet-ros-soak: {error}; its log ({log_path}):\n'
                  + log_path.read_text()[-4000:], file=sys.stderr)
            return 2
    finally:
        stop(segmenter)
        executor.shutdown()
        feeder.destroy_node()
        try_shutdown_ros()
    result = verdict(samples, latencies, args)
    # A node that leaks nothing but cannot stop cleanly fails the soak too.
    result['node_exit_status'] = segmenter.returncode
    result['exit_ok'] = segmenter.returncode == 0
    result['passed'] = result['passed'] and result['exit_ok']
    print(json.dumps(result, indent=2))
    if samples:
        print(verdict_line(result, args))
    if args.json:
        settings = {key: value for key, value in vars(args).items()
                    if key not in ('json', 'log')}
        args.json.write_text(json.dumps({'settings': settings, 'node_command': command,
                                         'samples': [asdict(s) for s in samples],
                                         'verdict': result}, indent=2) + '\n')
    return 0 if result['passed'] else 1


if __name__ == '__main__':
    sys.exit(main())
