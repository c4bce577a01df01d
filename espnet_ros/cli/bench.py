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


"""``espnet-ros bench``: every fast path against eager fp32 PyTorch, in one run."""

import argparse
from contextlib import nullcontext
import functools
import json
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from espnet_ros.cli.commands import help_of
from espnet_ros.cli.common import add_threads_argument, add_timing_arguments, parse_size
from espnet_ros.cli.table import aligned_lines
from espnet_ros.compat import SubParsers
from espnet_ros.imaging.files import list_images, read_bgr
from espnet_ros.runtime.engine import check_input_size, resolve_device
from espnet_ros.runtime.options import Backend, CompileMode
from espnet_ros.runtime.process import flush_denormals, run_on_passing_thread, use_threads
from espnet_ros.tools import benchmark, variants
from espnet_ros.tools.background_load import BackgroundLoad, load_error
from espnet_ros.tools.procfs import describe_cpu
from espnet_ros.zoo import DATA_ENV
from espnet_ros.zoo.registry import DEFAULT_MODEL
from espnet_ros.zoo.registry import get_spec, load

CAMVID_FRAMES = 4

EPILOG = """\
Each variant is timed on the network alone (preprocessed batch to labels: the arg-max is in
every variant's time, the baseline's too) and on the whole frame path of the node (rgb8
bytes, decoding, preprocessing, network, arg-max, resizing the labels back, colour and
overlay rendering, packing the output messages). Repetitions are interleaved over the
variants so that load from other processes hits all of them alike; compare only figures
from one run. Anchor rows: the baseline is the authors' network (eager
fp32, unfolded, NCHW) with the checkpoint's subnormal weights set to zero, as every variant
runs; 'subnormal weights as loaded' is the same network on the weights exactly as the
checkpoint holds them (what the authors' code runs: slow on Intel CPUs). Both run in
processes of their own with the CPU's default floating-point modes; the other variants run
as the node does, with flush-to-zero and denormals-are-zero set in their thread (row key
denormals_flushed). The CPU's name and instruction sets (AVX2, AVX-512, AVX512-BF16, AMX)
are printed and in every row.
Agreement: fraction of pixels labelled as the eager fp32 baseline labels them, on real
images at the network resolution. p99: 99th percentile of the runs (with 30 runs, close to
the slowest one). host MB: rise of the peak resident memory while the variant was built
and warmed up (the first one built, the baseline, also pays for one-off allocations); GPU MB:
torch.cuda.max_memory_allocated over the same span.
--background-load N: every round is also timed with N cores busy (processes the benchmark
starts, pauses while it builds and ends when done); loaded rows carry background_load N and
their ratios to the same variant's quiet median.

example: espnet-ros bench --model espnet_p2q8_cityscapes --size 512x256 --device cpu \\
             --json bench.json --plot bench.png --markdown
"""


def register(subparsers: SubParsers) -> None:
    """Add the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        'bench', help=help_of('bench'),
        description='Measure models x sizes x devices x precisions x backends: median and p99 '
                    'latency, frames per second, speed-up and label agreement against the '
                    'eager fp32 baseline, peak memory, FLOPs.',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', action='append', help=f'registry name, repeatable '
                        f'(default {DEFAULT_MODEL})')
    parser.add_argument('--size', action='append', type=parse_size,
                        help='network input WxH, repeatable (default: training resolution)')
    parser.add_argument('--device', action='append', choices=('cpu', 'cuda', 'auto'),
                        help='repeatable (default auto: cuda if available, else cpu)')
    parser.add_argument('--backend', action='append', choices=Backend.values(),
                        help='only these backends (the baseline and its as-loaded anchor '
                             'always run; torch-compile, the older spelling, picks the rows '
                             'with compile_mode jit)')
    parser.add_argument('--precision', action='append', choices=('fp32', 'fp16', 'bf16', 'mixed'),
                        help='only these precisions (the baseline and its as-loaded anchor '
                             'always run)')
    parser.add_argument('--compile', action='store_true',
                        help='also measure compile_mode jit (torch.compile in the process) '
                             'and backend auto on its compiled graph from the cache (tens of '
                             'seconds per model to compile)')
    add_timing_arguments(parser, 'variant')
    parser.add_argument('--camera', type=parse_size, default=(1024, 512),
                        help='camera frame WxH for the frame path (default 1024x512)')
    parser.add_argument('--images', nargs='+', type=Path,
                        help=f'images or folders for agreement (default: the Cityscapes '
                             f'sample and a few CamVid val frames of ${DATA_ENV})')
    parser.add_argument('--weights-dir', type=Path, help='folder of the official checkpoints')
    add_threads_argument(parser)
    parser.add_argument('--background-load', type=int, default=0, metavar='N',
                        help='also time every variant with N cores kept busy by processes the '
                             'benchmark starts and stops (quiet and loaded in one run)')
    parser.add_argument('--plot', type=Path, help='bar chart of frames per second (PNG)')
    parser.add_argument('--markdown', action='store_true', help="print the README's table")
    parser.set_defaults(run=run)


def agreement_images(paths: Optional[Sequence[Path]]) -> list[np.ndarray]:
    """Return BGR images for agreement: the given ones, else $ESPNET_ROS_DATA's."""
    if paths:
        return [read_bgr(path) for path in list_images(paths)]
    data = os.environ.get(DATA_ENV)
    if not data:
        raise FileNotFoundError(f'no images for agreement: pass --images, or set ${DATA_ENV} '
                                'to a folder holding cityscapes/ and camvid/val/ frames')
    found = sorted((Path(data) / 'cityscapes').glob('*.png'))
    camvid = sorted((Path(data) / 'camvid' / 'val').glob('*.png'))
    found += camvid[::max(len(camvid) // CAMVID_FRAMES, 1)][:CAMVID_FRAMES]
    if not found:
        raise FileNotFoundError(f'no images for agreement in ${DATA_ENV} ({data}); pass '
                                '--images')
    return [read_bgr(path) for path in found]


def select_variants(device: str, args: argparse.Namespace) -> list[variants.Variant]:
    """Return the anchors (baseline, and it as loaded) plus the variants the filters keep."""
    backends = set(args.backend or ())
    compile_network = args.compile or bool({Backend.TORCH_COMPILE, Backend.AUTO} & backends)
    candidates = variants.default_variants(device, compile_network=compile_network)
    return [variant for variant in candidates
            if variant.is_anchor or (
                (not backends or _backend_matches(variant, backends))
                and (not args.precision or variant.precision in args.precision))]


def _backend_matches(variant: variants.Variant, backends: set[str]) -> bool:
    """Tell whether --backend picks ``variant``; torch-compile picks the compile_mode jit rows."""
    return variant.backend in backends or (Backend.TORCH_COMPILE in backends
                                           and variant.compile_mode == CompileMode.JIT)


def _key(row: dict[str, Any]) -> tuple:
    return (row['model'], row['size'], row['device'], row['variant'],
            row.get('background_load', 0))


def _pair(rows: list[dict[str, Any]], *, loaded: bool = False
          ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Return (network row, frame row) per variant, in measuring order, quiet or loaded."""
    rows = [row for row in rows if bool(row.get('background_load', 0)) == loaded]
    frames = {_key(r): r for r in rows if r['kind'] == 'frame'}
    return [(r, frames[_key(r)]) for r in rows if r['kind'] == 'network']


def _mb(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.0f}'


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print one aligned block per model, size and device."""
    header = ('variant', 'net ms', 'net p99', 'net fps', 'net x', 'frame ms', 'frame p99',
              'frame fps', 'frame x', 'agree %', 'host MB', 'GPU MB')
    lines = [[net['variant'], f'{net["median_ms"]:.1f}', f'{net["p99_ms"]:.1f}',
              f'{net["fps"]:.1f}', f'{net["speedup"]:.2f}', f'{frame["median_ms"]:.1f}',
              f'{frame["p99_ms"]:.1f}', f'{frame["fps"]:.1f}', f'{frame["speedup"]:.2f}',
              f'{100 * net["agreement"]:.2f}', _mb(net['host_peak_mb']),
              _mb(net['gpu_peak_mb'])] for net, frame in _pair(rows)]
    header_line, *row_lines = aligned_lines(header, lines, left=1)
    previous = None
    for (net, _), line in zip(_pair(rows), row_lines):
        config = (net['model'], net['size'], net['device'])
        if config != previous:
            print(f'\n{net["model"]} at {net["size"]} on {net["device"]}: '
                  f'{net["flops"] / 1e9:.2f} GFLOP per frame, {net["params"]:,} parameters, '
                  f'camera {net["camera"]}, {net["repeats"]} runs, {net["threads"]} threads')
            print(f'CPU: {describe_cpu({"name": net["cpu"], "isa": net["cpu_isa"]})}')
            print(header_line)
            previous = config
        print(line)


def _cpu(rows: list[dict[str, Any]]) -> str:
    return describe_cpu({'name': rows[0]['cpu'], 'isa': rows[0]['cpu_isa']}) if rows else '-'


def markdown(rows: list[dict[str, Any]]) -> str:
    """Return the README table: one line per variant, network and frame path side by side."""
    lines = [f'CPU: {_cpu(rows)}', '',
             '| device | model | resolution | precision | backend | network ms | network fps '
             '| frame ms | frame fps | speed-up network / frame | agreement |',
             '| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |']
    for net, frame in _pair(rows):
        lines.append(
            f'| {net["device"]} | {net["model"]} | {net["size"]} | {net["precision"]} '
            f'| {net["variant"]} | {net["median_ms"]:.1f} | {net["fps"]:.1f} '
            f'| {frame["median_ms"]:.1f} | {frame["fps"]:.1f} '
            f'| {net["speedup"]:.2f}x / {frame["speedup"]:.2f}x '
            f'| {100 * net["agreement"]:.2f}% |')
    return '\n'.join(lines)


def load_markdown(rows: list[dict[str, Any]]) -> str:
    """Return quiet and loaded figures side by side: one line per variant."""
    lines = [f'CPU: {_cpu(rows)}', '',
             '| model | resolution | variant | busy cores | threads | frame ms quiet '
             '| frame ms loaded | loaded / quiet | frame p99 loaded | p99 / quiet median '
             '| network ms quiet | network ms loaded |',
             '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for net, frame in _pair(rows, loaded=True):
        lines.append(
            f'| {net["model"]} | {net["size"]} | {net["variant"]} | {net["background_load"]} '
            f'| {net["threads"]} | {frame["quiet_median_ms"]:.1f} | {frame["median_ms"]:.1f} '
            f'| {frame["loaded_over_quiet"]:.2f}x | {frame["p99_ms"]:.1f} '
            f'| {frame["p99_over_quiet_median"]:.2f}x | {net["quiet_median_ms"]:.1f} '
            f'| {net["median_ms"]:.1f} |')
    return '\n'.join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Save a bar chart of frames per second, network and frame path, per configuration."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    configs: dict[tuple[str, str, str], list] = {}
    for net, frame in _pair(rows):
        configs.setdefault((net['model'], net['size'], net['device']), []).append((net, frame))
    figure, axes = plt.subplots(len(configs), 1, squeeze=False,
                                figsize=(10, 1.5 + 0.6 * max(map(len, configs.values())) *
                                         len(configs)))
    for axis, ((model, size, device), pairs) in zip(axes[:, 0], configs.items()):
        positions = np.arange(len(pairs))
        axis.barh(positions - 0.2, [net['fps'] for net, _ in pairs], 0.4, label='network')
        axis.barh(positions + 0.2, [frame['fps'] for _, frame in pairs], 0.4,
                  label='whole frame')
        axis.set_yticks(positions, [net['variant'] for net, _ in pairs])
        axis.invert_yaxis()
        # Room on the right for the legend.
        axis.set_xlim(0, 1.3 * max(max(net['fps'], frame['fps']) for net, frame in pairs))
        axis.set_xlabel('frames per second')
        axis.set_title(f'{model} at {size} on {device}')
        axis.legend(loc='lower right')
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _flushing_denormals(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    flush_denormals()
    return function(*args, **kwargs)


def run(args: argparse.Namespace) -> int:
    """Measure every requested configuration, print and write the results."""
    reason = load_error(args.background_load)
    if reason:
        raise ValueError(reason)
    use_threads(args.threads)
    images = agreement_images(args.images)
    # An unavailable cuda stays in: each of its variants is then skipped with the reason.
    devices = [resolve_device(device).type if device == 'auto' else device
               for device in dict.fromkeys(args.device or ['auto'])]
    rows: list[dict[str, Any]] = []
    with (BackgroundLoad(args.background_load) if args.background_load
          else nullcontext()) as background:
        for name in args.model or [DEFAULT_MODEL]:
            spec = get_spec(name)
            network = load(name, args.weights_dir)
            # The anchor row: the authors' network on the checkpoint's weights as they are.
            as_loaded = load(name, args.weights_dir, keep_subnormals=True, log=lambda _: None)
            for size in args.size or [spec.input_size]:
                size = check_input_size(spec, size)
                for device in devices:
                    # On a thread of its own that flushes denormals, as the node's inference
                    # thread does; the caller's thread (and its OpenMP workers) stay as they are.
                    rows += run_on_passing_thread(functools.partial(
                        _flushing_denormals, benchmark.run, spec, network, size,
                        select_variants(device, args), images=images, camera_size=args.camera,
                        repeats=args.repeats, warmup=args.warmup, load=background,
                        as_loaded=as_loaded, denormals_flushed=True))
    print_table([row for row in rows if not row['background_load']])
    if args.background_load:
        print(f'\nquiet and with {args.background_load} busy cores, in the same run:')
        print(load_markdown(rows))
    if args.markdown:
        print('\n' + markdown(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + '\n')
    if args.plot:
        plot(rows, args.plot)
    return 0 if rows else 1
