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
``espnet-ros-live --cameras N``: several cameras on one model, against one node per camera.

N image players (``<namespace>/cam<i>/image`` at ``--rate`` Hz each) stay up while three
set-ups are measured in turn, in one run: one segmenter serving the N cameras batched
(``max_batch`` 0), the same with ``max_batch: 1``, and N separate single-camera segmenters.
For each: per-camera latency from the camera stamp to the labels' arrival (median, p99), the
share of each camera's frames labelled, frames labelled per second in total, the frames the
nodes dropped (their diagnostics), the resident memory of all segmenter processes, and how
many labels and diagnostics of the set-up before arrived late and were set aside. With
``--background-load N`` the three are measured again with N cores kept busy. A table is
printed and ``--json`` writes every figure.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Optional, Sequence

from diagnostic_msgs.msg import DiagnosticArray
import rclpy
from rclpy.context import Context
from rclpy.node import Node
from sensor_msgs.msg import Image

from espnet_ros.compat import try_shutdown_ros
from espnet_ros.ros.qos import OUTPUT_QOS
from espnet_ros.streaming.diagnostics import DROPPED_KEY, RECEIVED_KEY
from espnet_ros.streaming.stats import percentile
from espnet_ros.streaming.worker import stamp_ns
from espnet_ros.tools.background_load import BackgroundLoad
from espnet_ros.tools.procfs import status_kib

START_TIMEOUT_S = 600.0  # N nodes importing torch and loading a model on two busy cores
SETTLE_S = 3.0           # after every camera's first labels, before the window opens
SPIN_S = 0.05
KIB_PER_MIB = 1024
# The three set-ups: name, and the segmenter parameters beyond the common ones (None: one
# node per camera).
SETUPS: tuple[tuple[str, Optional[dict]], ...] = (
    ('batched', {'max_batch': 0}),
    ('max_batch 1', {'max_batch': 1}),
    ('separate nodes', None),
)


def camera_names(count: int) -> list[str]:
    """Return the cameras' names: cam0, cam1, ..."""
    return [f'cam{index}' for index in range(count)]


class CameraProbe(Node):
    """Records each camera's labels (latency, arrival) and the segmenters' frame counts."""

    def __init__(self, namespace: str, names: Sequence[str], *,
                 context: Optional[Context] = None) -> None:
        super().__init__('multi_camera_probe', namespace=namespace, context=context)
        self.latencies_ms: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
        self.counts: dict[str, dict[str, int]] = {}  # diagnostics hardware id: counts
        # Messages stamped before this come from the set-up before (see clear()).
        self.since_ns = 0
        self.stale = 0
        for name in names:
            self.create_subscription(Image, f'{name}/segmentation/labels',
                                     self._recorder(name), OUTPUT_QOS)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)

    def _recorder(self, name: str) -> Callable[[Image], None]:
        def record(message: Image) -> None:
            now = self.get_clock().now().nanoseconds
            if self._stale(message.header):
                return
            latency_ms = (now - stamp_ns(message.header)) / 1e6
            self.latencies_ms[name].append((time.monotonic(), latency_ms))
        return record

    def _stale(self, header: Any) -> bool:
        """Return True, and count it, for a message stamped before :meth:`clear`."""
        stale = stamp_ns(header) < self.since_ns
        self.stale += stale
        return stale

    def _on_diagnostics(self, message: DiagnosticArray) -> None:
        if self._stale(message.header):
            return
        for status in message.status:
            values = {pair.key: pair.value for pair in status.values}
            if RECEIVED_KEY in values and DROPPED_KEY in values:
                self.counts[status.hardware_id] = {key: int(values[key])
                                                   for key in (RECEIVED_KEY, DROPPED_KEY)}

    def clear(self) -> None:
        """
        Forget what was recorded, and ignore what arrives stamped before now.

        A new set-up starts. The set-up before published on the same topics, and its last
        labels and diagnostics can still be queued here: counted, they would open the new
        set-up's window while its nodes are still starting.
        """
        for samples in self.latencies_ms.values():
            samples.clear()
        self.counts.clear()
        self.stale = 0
        self.since_ns = self.get_clock().now().nanoseconds


def spin_until(probe: CameraProbe, condition: Callable[[], bool], timeout_s: float,
               nodes: Sequence[subprocess.Popen]) -> bool:
    """Spin until ``condition()``; False if a node ended or the time ran out."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if any(node.poll() is not None for node in nodes) or time.monotonic() > deadline:
            return False
        rclpy.spin_once(probe, timeout_sec=SPIN_S)
    return True


def measure(probe: CameraProbe, nodes: Sequence[subprocess.Popen],
            players: Sequence[subprocess.Popen], window_s: float, rate_hz: float,
            camera_ids: dict[str, str]) -> Optional[dict]:
    """
    Measure one set-up's segmenters ``nodes`` for ``window_s`` once every camera is labelled.

    Returns None when a process ended or a camera got no labels in time.
    """
    probe.clear()
    watched = [*nodes, *players]
    if not spin_until(probe, lambda: all(probe.latencies_ms.values()), START_TIMEOUT_S,
                      watched):
        print('espnet-ros-live: not every camera was labelled (a node ended, or too slow)',
              file=sys.stderr)
        return None
    spin_until(probe, lambda: False, SETTLE_S, watched)
    before = {name: dict(probe.counts.get(hardware, {})) for name, hardware in camera_ids.items()}
    opened = time.monotonic()
    spin_until(probe, lambda: False, window_s, watched)
    closed = time.monotonic()
    memory_kib = [status_kib('VmRSS', node.pid) or 0 for node in nodes]
    cameras = {}
    for name, samples in probe.latencies_ms.items():
        latencies = [latency for arrived, latency in samples if opened <= arrived < closed]
        after = probe.counts.get(camera_ids[name], {})
        start = before.get(name, {})
        cameras[name] = {
            'frames': len(latencies),
            'served_share': len(latencies) / (rate_hz * (closed - opened)),
            'latency_median_ms': statistics.median(latencies) if latencies else float('nan'),
            'latency_p99_ms': percentile(latencies, 99) if latencies else float('nan'),
            'dropped': after.get(DROPPED_KEY, 0) - start.get(DROPPED_KEY, 0),
            'received': after.get(RECEIVED_KEY, 0) - start.get(RECEIVED_KEY, 0),
        }
    return {'cameras': cameras, 'seconds': closed - opened,
            'total_fps': sum(camera['frames'] for camera in cameras.values()) / (
                closed - opened),
            'min_served_share': min(camera['served_share'] for camera in cameras.values()),
            'dropped': sum(camera['dropped'] for camera in cameras.values()),
            'stale_set_aside': probe.stale,
            'resident_mib': sum(memory_kib) / KIB_PER_MIB, 'processes': len(nodes)}


Started = tuple[list[subprocess.Popen], dict[str, str]]


def start_setup(setup: Optional[dict], args: argparse.Namespace, names: list[str],
                command: Callable[..., list[str]]) -> Started:
    """Start one set-up's segmenters; return them and each camera's diagnostics id."""
    common = {'model': args.model, 'device': args.device, 'precision': args.precision,
              'input_transport': args.transport, 'input_width': args.size[0],
              'input_height': args.size[1], 'threads': args.threads,
              'compile_mode': args.compile_mode or 'eager',
              **({'backend': args.backend} if args.backend else {})}
    namespace = args.namespace.rstrip('/')
    if setup is None:
        nodes = [subprocess.Popen(command('segmenter', f'{namespace}/{name}', common))
                 for name in names]
        return nodes, {name: f'{namespace}/{name}/segmenter' for name in names}
    node = subprocess.Popen(command('segmenter', namespace,
                                    {**common, 'cameras': names, **setup}))
    return [node], {name: f'{namespace}/segmenter/{name}' for name in names}


def print_table(results: dict) -> None:
    """Print one row per set-up (and load)."""
    print(f'{"set-up":<24} {"fps total":>9} {"min served":>10} {"median ms":>9} '
          f'{"p99 ms":>8} {"dropped":>7} {"RSS MiB":>8} {"procs":>5}')
    for label, figures in results['setups'].items():
        worst_median = max(camera['latency_median_ms'] for camera in figures['cameras'].values())
        worst_p99 = max(camera['latency_p99_ms'] for camera in figures['cameras'].values())
        print(f'{label:<24} {figures["total_fps"]:>9.2f} {figures["min_served_share"]:>10.0%} '
              f'{worst_median:>9.1f} {worst_p99:>8.1f} {figures["dropped"]:>7} '
              f'{figures["resident_mib"]:>8.0f} {figures["processes"]:>5}')
    print("(median and p99: the worst camera; min served: the lowest share of a camera's "
          'frames labelled)')


def run_cameras(args: argparse.Namespace, background: BackgroundLoad,
                command: Callable[..., list[str]], stop: Callable[[Any], Any]) -> int:
    """Run the players and the three set-ups (quiet, then loaded); print and save results."""
    names = camera_names(args.cameras)
    namespace = args.namespace.rstrip('/')
    players = [subprocess.Popen(command('image_player', f'{namespace}/{name}', {
        'source': str(args.source.resolve()), 'rate': float(args.rate),
        'transport': args.transport, 'width': args.camera_size[0],
        'height': args.camera_size[1], 'frame_id': name})) for name in names]
    rclpy.init()
    probe = CameraProbe(namespace, names)
    results: dict[str, Any] = {
        'model': args.model, 'cameras': args.cameras, 'camera_rate_hz': args.rate,
        'camera_size': '{}x{}'.format(*args.camera_size) if all(args.camera_size) else 'stored',
        'network_size': '{}x{}'.format(*args.size) if all(args.size) else 'training',
        'threads': args.threads, 'compile_mode': args.compile_mode or 'eager',
        'window_s': args.seconds, 'setups': {}}
    loads = [0] + ([background.cores] if background.cores else [])
    try:
        for load in loads:
            if load:
                background.busy()
            for label, setup in SETUPS:
                nodes, ids = start_setup(setup, args, names, command)
                try:
                    figures = measure(probe, nodes, players, args.seconds, args.rate, ids)
                finally:
                    for node in nodes:
                        stop(node)
                if figures is None:
                    return 1
                key = label + (f', {load} busy cores' if load else '')
                results['setups'][key] = figures
                print(f'{key}: {figures["total_fps"]:.2f} frames/s in total', flush=True)
    finally:
        background.close()
        for player in players:
            stop(player)
        probe.destroy_node()
        try_shutdown_ros()
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + '\n')
    return 0
