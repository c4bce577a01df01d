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


"""``espnet-ros bench-cloud``: the labelled cloud against sensor_msgs_py's create_cloud."""

import argparse
import json
from typing import Any

from espnet_ros.cli.common import add_timing_arguments, parse_size
from espnet_ros.cli.table import aligned_lines
from espnet_ros.compat import SubParsers

DEFAULT_SIZES = ((640, 480), (1280, 720))

EPILOG = """\
Both paths turn the same 16UC1 depth message, labels, confidence and camera matrix into a
PointCloud2 with x, y, z, rgb, label and confidence; their bytes are checked to be equal
before timing. Repetitions alternate between the two; compare only figures from one run.
Needs ROS 2 messages and sensor_msgs_py.

example: espnet-ros bench-cloud --json docs/cloud_bench.json
"""


def register(subparsers: SubParsers) -> None:
    """Add the ``bench-cloud`` subcommand."""
    parser = subparsers.add_parser(
        'bench-cloud', help='labelled point cloud build against sensor_msgs_py.create_cloud',
        description='Time building the labelled organized cloud from depth, ours against '
                    'sensor_msgs_py.point_cloud2.create_cloud, on the same data.',
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', action='append', type=parse_size,
                        help='depth and label image WxH, repeatable (default 640x480 and '
                             '1280x720)')
    add_timing_arguments(parser, 'path')
    parser.set_defaults(run=run)


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print one line per size: medians, 90th percentiles and the speed-up."""
    header = ('size', 'points', 'ours ms', 'ours p90', 'create_cloud ms', 'create_cloud p90',
              'speed-up')
    lines = [(row['size'], f'{row["points"]:,}', f'{row["ours_median_ms"]:.1f}',
              f'{row["ours_p90_ms"]:.1f}', f'{row["library_median_ms"]:.1f}',
              f'{row["library_p90_ms"]:.1f}', f'{row["speedup"]:.2f}x') for row in rows]
    print('\n'.join(aligned_lines(header, lines)))


def run(args: argparse.Namespace) -> int:
    """Measure, print and write the rows."""
    # Imported here: the other subcommands work without ROS 2 installed.
    from espnet_ros.tools import cloud_bench

    rows = cloud_bench.run(args.size or DEFAULT_SIZES, args.repeats, args.warmup)
    print_table(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + '\n')
    return 0
