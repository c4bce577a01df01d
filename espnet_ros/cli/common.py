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


"""Arguments and helpers shared by the ``espnet-ros`` subcommands."""

import argparse
import math
import os
from pathlib import Path
import signal
import sys
import threading
from typing import Callable, Optional, Protocol

import cv2

from espnet_ros.argument_types import non_negative_int, positive_int
from espnet_ros.cli.commands import INTERRUPTED_STATUS
from espnet_ros.imaging.files import list_images, read_bgr
from espnet_ros.imaging.pipeline import OutputRequest
from espnet_ros.offline.stream import MAX_SECONDS, Summary
from espnet_ros.runtime import options
from espnet_ros.runtime.engine import EngineConfig, SegmentationEngine
from espnet_ros.runtime.options import (Backend, CompileMode, DEFAULT_DEVICE,
                                        DEFAULT_OUTPUT_RESOLUTION, DEFAULT_PRECISION,
                                        DEFAULT_THREADS, MAX_THREADS, NODE_COMPILE_MODE,
                                        OutputResolution, Precision)
from espnet_ros.runtime.process import use_threads
from espnet_ros.zoo import DEFAULT_MODEL
from espnet_ros.zoo.label_map import LabelMap, load_for_dataset
from espnet_ros.zoo.registry import get_spec

CALIBRATION_FRAMES = 32
# Signals that end an offline run as Ctrl-C does: closed, valid, status 128 + the signal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
FAILED_STATUS = 1
# A batch holds this many frames with all their outputs in memory at once.
MAX_BATCH = 64
KIB = 1024
FULL_HD_FRAME_BYTES = 1920 * 1080 * 3 * 8  # the frame, its outputs and the network's copies
# A benchmark's timed and untimed runs per variant or path, unless told otherwise.
DEFAULT_REPEATS = 30
DEFAULT_WARMUP = 3
# Where commands write what they make unless told otherwise; git-ignored in the source tree.
OUTPUT_DIR = Path('out')
SIZE_HELP = ('network input WxH, multiples of the network stride; a 0 side (640x0) follows the '
             'other at the training aspect ratio (default: the training resolution)')


def parse_size(text: str) -> tuple[int, int]:
    """Parse 'WxH' into (width, height), as an argparse type."""
    try:
        return options.parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def threads_argument(text: str) -> int:
    """Parse a thread count (0 = auto), as an argparse type."""
    reason = options.threads_error(int(text) if text.isdigit() else text)
    if reason:
        raise argparse.ArgumentTypeError(reason)
    return int(text)


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """Add --threads, the node's ``threads`` parameter."""
    parser.add_argument('--threads', type=threads_argument, default=DEFAULT_THREADS,
                        metavar=f'0..{MAX_THREADS}',
                        help='CPU threads for inference (default 0: half the usable cores, as '
                             "the node's threads parameter)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --model (one registry name) and --weights-dir."""
    parser.add_argument('--model', default=DEFAULT_MODEL,
                        help=f'registry name (default {DEFAULT_MODEL}; see `espnet-ros models`)')
    parser.add_argument('--weights-dir', type=Path,
                        help='folder laid out like the official release (espnet/encoder, ...)')


def add_engine_arguments(parser: argparse.ArgumentParser, *, size_help: Optional[str] = None
                         ) -> None:
    """Add --model, --weights-dir, --checkpoint, --size, --device, --precision, --threads."""
    add_model_arguments(parser)
    parser.add_argument('--checkpoint', type=Path, help='explicit checkpoint file')
    parser.add_argument('--size', type=parse_size,
                        help=size_help or SIZE_HELP)
    parser.add_argument('--device', default=DEFAULT_DEVICE, help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--precision', default=DEFAULT_PRECISION.value,
                        choices=Precision.values(),
                        help=f"arithmetic (default {DEFAULT_PRECISION}, as the node's)")
    parser.add_argument('--backend', default=Backend.AUTO.value, choices=Backend.values(),
                        help=f'what runs the network (default {Backend.AUTO})')
    parser.add_argument('--compile-mode', default=CompileMode.EAGER.value,
                        choices=CompileMode.values(),
                        help='backend auto on the CPU: switch to the compiled graph the cache '
                             'holds (cached), also building it aside (background), or stay '
                             f'eager (default {CompileMode.EAGER}; the node uses '
                             f'{NODE_COMPILE_MODE}); jit: compile in the process at every '
                             'start (backends torch and auto)')
    add_threads_argument(parser)
    parser.add_argument('--calibration', type=Path, metavar='DIR',
                        help="frames of the model's own dataset to calibrate precision int8 on "
                             f'(up to {CALIBRATION_FRAMES}, evenly spaced)')


def add_label_map_argument(parser: argparse.ArgumentParser) -> None:
    """Add --label-map: publish groups of the model's classes, as the node's label_map."""
    parser.add_argument('--label-map', type=Path, metavar='FILE',
                        help="YAML file of groups of the model's classes, written instead of "
                             'them (labels, colours, confidence, clouds, label_info), as the '
                             "node's label_map parameter (e.g. config/cityscapes_groups.yaml)")


def label_map_from_args(args: argparse.Namespace) -> Optional[LabelMap]:
    """Return the label map --label-map names for --model, checked; None without one."""
    path = getattr(args, 'label_map', None)
    if path is None:
        return None
    return load_for_dataset(path, get_spec(args.model).dataset)


def calibration_frames(folder: Optional[Path]) -> Optional[list]:
    """Return up to CALIBRATION_FRAMES RGB frames spread over ``folder``, or None."""
    if folder is None:
        return None
    paths = list_images([folder])
    chosen = paths[::max(1, len(paths) // CALIBRATION_FRAMES)][:CALIBRATION_FRAMES]
    return [cv2.cvtColor(read_bgr(path), cv2.COLOR_BGR2RGB) for path in chosen]


def engine_from_args(args: argparse.Namespace) -> SegmentationEngine:
    """Set the thread count and build the engine the common arguments describe."""
    use_threads(args.threads)
    label_map = label_map_from_args(args)  # before the network: a bad file fails at once
    engine = SegmentationEngine.from_pretrained(
        args.model, EngineConfig(input_size=args.size, device=args.device,
                                 precision=args.precision, backend=args.backend,
                                 compile_mode=args.compile_mode),
        weights_dir=args.weights_dir, checkpoint=args.checkpoint,
        calibration=calibration_frames(args.calibration),
        log=lambda text: print(text, file=sys.stderr), label_map=label_map)
    engine.start_background()  # the compiled graph compile_mode asks for, if any
    return engine


def add_timing_arguments(parser: argparse.ArgumentParser, unit: str, *, warmup: bool = True,
                         json_help: str = 'write the rows here (a JSON list)') -> None:
    """Add a benchmark's --repeats and --warmup (runs per ``unit``) and --json."""
    parser.add_argument('--repeats', type=positive_int, default=DEFAULT_REPEATS,
                        help=f'timed runs per {unit}')
    if warmup:
        parser.add_argument('--warmup', type=non_negative_int, default=DEFAULT_WARMUP,
                            help=f'untimed runs per {unit}')
    parser.add_argument('--json', type=Path, help=json_help)


def available_memory() -> Optional[int]:
    """Return the bytes the kernel could give now (MemAvailable: free plus reclaimable)."""
    try:
        with open('/proc/meminfo') as meminfo:
            for line in meminfo:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * KIB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
    except (ValueError, OSError):
        return None


def largest_batch() -> int:
    """Return the most frames a batch may hold: :data:`MAX_BATCH`, fewer if memory is short."""
    available = available_memory()
    if available is None:
        return MAX_BATCH
    # Half of the memory free now, at full-HD frames with all their outputs.
    return max(1, min(MAX_BATCH, available // 2 // FULL_HD_FRAME_BYTES))


def batch_argument(text: str) -> int:
    """Parse --batch: 1 to :func:`largest_batch` frames (a batch is held in memory at once)."""
    value = positive_int(text)
    limit = largest_batch()
    if value > limit:
        raise argparse.ArgumentTypeError(
            f'at most {limit} frames here: a batch holds its frames and all their outputs in '
            f'memory (about {FULL_HD_FRAME_BYTES >> 20} MiB a full-HD frame, up to half the '
            f'free memory, {MAX_BATCH} at most), got {value}')
    return value


def seconds_argument(text: str) -> float:
    """Parse a time in seconds from a bag's start: finite, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number of seconds') from None
    if not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f'must be from 0 to {MAX_SECONDS:g} seconds, got {text}')
    return value


def add_offline_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --batch, --alpha, --output-resolution, --force and --no-progress (offline)."""
    defaults = OutputRequest()
    parser.add_argument('--batch', type=batch_argument, default=1,
                        help=f'frames per network call, 1 to {MAX_BATCH} as memory allows '
                             '(default 1; more can pay on a GPU)')
    parser.add_argument('--alpha', type=float, default=defaults.alpha,
                        help=f'overlay opacity of the colours (default {defaults.alpha})')
    parser.add_argument('--output-resolution', default=DEFAULT_OUTPUT_RESOLUTION.value,
                        choices=OutputResolution.values(),
                        help=f'outputs at the camera or the network resolution (default '
                             f'{DEFAULT_OUTPUT_RESOLUTION})')
    parser.add_argument('--force', action='store_true', help='replace an existing output')
    parser.add_argument('--no-progress', action='store_true',
                        help='no progress bar (logs, CI); the summary is still printed')


def output_request(args: argparse.Namespace) -> OutputRequest:
    """Return the rendering options of the offline arguments (outputs are chosen later)."""
    return OutputRequest(output_resolution=args.output_resolution, alpha=args.alpha)


class OfflineJob(Protocol):
    """A checked offline job (a bag or a video) that runs on an engine and can be dropped."""

    def run(self, engine: SegmentationEngine, should_stop: Callable[[], bool]) -> Summary:
        """Segment everything; stop early once ``should_stop()``."""

    def close(self) -> None:
        """Release the input without running."""


def run_offline(job: OfflineJob, args: argparse.Namespace, announcement: str) -> int:
    """
    Load the engine, run a checked offline job and print its summary.

    Ctrl-C, SIGTERM (timeout, systemd, docker) and SIGHUP (a closed terminal) each ask the
    job to stop after the batch in hand and close its output properly. Returns 0; 128 plus
    the signal's number when one ended it (130 for Ctrl-C, 143 for SIGTERM); 1 when frames
    were read but none could be segmented.
    """
    try:
        engine = engine_from_args(args)
    except BaseException:
        job.close()
        raise
    print(announcement)
    interrupted = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt  # a second signal: stop now, outputs still close
        received.append(signum)
        interrupted.set()
        print(f'\n{signal.Signals(signum).name}: finishing the frames in hand and closing the '
              'output (Ctrl-C again to stop at once)', file=sys.stderr)

    previous = {signum: signal.signal(signum, on_signal) for signum in STOP_SIGNALS}
    try:
        summary = job.run(engine, interrupted.is_set)
    except KeyboardInterrupt:
        if not received:
            raise
        print(f'stopped at once; {args.out} was closed', file=sys.stderr)
        return INTERRUPTED_STATUS - signal.SIGINT + received[0]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for line in summary.lines():
        print(line)
    if interrupted.is_set():
        print(f'interrupted after {summary.frames} frames; {args.out} holds them and is '
              'complete')
        return INTERRUPTED_STATUS - signal.SIGINT + received[0]
    if summary.frames and not summary.segmented:
        print(f'espnet-ros: none of the {summary.frames} frames could be segmented (all '
              f'malformed); {args.out} holds no segmentation', file=sys.stderr)
        return FAILED_STATUS
    print(f'wrote {args.out}')
    return 0
