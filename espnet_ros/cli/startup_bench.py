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

"""``espnet-ros bench-startup``: seconds to the first labels and to compiled speed."""

import argparse
import json
from typing import Any

from espnet_ros.cli.commands import help_of
from espnet_ros.cli.common import (add_model_arguments, add_threads_argument,
                                   add_timing_arguments, parse_size)
from espnet_ros.cli.table import aligned_lines
from espnet_ros.compat import SubParsers

EPILOG = """\
Each way of starting runs in a fresh process; its clock starts just before the process is
spawned, so importing PyTorch and loading the checkpoint count. eager: backend auto with
compile_mode eager. jit: compile_mode jit (the older backend torch-compile), compiled at
every start. cold: compile_mode background on an empty cache, serving eager while the graph
is built aside. warm: compile_mode cached on the cache cold filled, as every start after the
first. onednn: backend onednn, its plan compiled and built at every start. The cache is a
fresh temporary folder, removed at the end. The cold phase compiles for minutes.

example: espnet-ros bench-startup --size 512x256 --json docs/startup.json
"""


def register(subparsers: SubParsers) -> None:
    """Add the ``bench-startup`` subcommand."""
    parser = subparsers.add_parser(
        'bench-startup', help=help_of('bench-startup'),
        description='Seconds from a fresh process to the first labels and to the final '
                    'runner, and the speed on it: eager, compiled at start, and compiled '
                    'graphs from the cache (cold, then warm).',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument('--size', type=parse_size, default=(512, 256),
                        help='network input WxH (default 512x256)')
    add_threads_argument(parser)
    add_timing_arguments(parser, 'phase', warmup=False,
                         json_help='write the request and its rows here (a JSON object)')
    parser.set_defaults(run=run)


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print one line per phase."""
    header = ('start', 'first labels s', 'final runner s', 'runner', 'ms/frame')
    lines = [(row['phase'], '-', '-', f'not run: {row["not_run"]}', '-') if 'not_run' in row
             else (row['phase'], f'{row["first_labels_s"]:.1f}', f'{row["final_runner_s"]:.1f}',
                   row['runner'], f'{row["median_ms"]:.1f}') for row in rows]
    print('\n'.join(aligned_lines(header, lines)))


def run(args: argparse.Namespace) -> int:
    """Measure, print and write the rows."""
    from espnet_ros.tools import startup_bench

    request = startup_bench.Request(
        model=args.model, size=args.size, threads=args.threads, repeats=args.repeats,
        weights_dir=str(args.weights_dir) if args.weights_dir else None)
    rows = startup_bench.run(request)
    print_table(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({'request': request.__dict__, 'rows': rows},
                                        indent=2) + '\n')
    return 0
