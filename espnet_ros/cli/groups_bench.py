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

"""``espnet-ros bench-groups``: the cost of a label map and of a per-class cloud."""

import argparse
import json
from pathlib import Path
from typing import Any

from espnet_ros.cli.cloud_bench import DEFAULT_SIZES
from espnet_ros.cli.common import add_timing_arguments, parse_size
from espnet_ros.cli.table import aligned_lines
from espnet_ros.compat import SubParsers
from espnet_ros.zoo import DEFAULT_MODEL

EPILOG = """\
At each size: the head's labels without and with the label map's lookup table, its labels
and confidence against the grouped ones (the group's summed probability), the organized
labelled cloud and one group's dense cloud taken from it. Seeded logits stand in for the
network. Repetitions alternate; compare only figures from one run.

example: espnet-ros bench-groups --json docs/groups_bench.json
"""


def register(subparsers: SubParsers) -> None:
    """Add the ``bench-groups`` subcommand."""
    parser = subparsers.add_parser(
        'bench-groups', help='cost of label groups and of a per-class cloud',
        description='Time grouping labels and confidence through a label map, and taking '
                    "one group's dense cloud out of the labelled cloud.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', action='append', type=parse_size,
                        help='camera WxH, repeatable (default 640x480 and 1280x720)')
    parser.add_argument('--model', default=DEFAULT_MODEL,
                        help='registry model whose classes are grouped (class count, stride)')
    parser.add_argument('--label-map', type=Path, metavar='FILE',
                        help='label map (default config/cityscapes_groups.yaml)')
    add_timing_arguments(parser, 'path')
    parser.set_defaults(run=run)


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print one line per size: the medians (ms) and what grouping adds."""
    header = ('size', 'labels', '+lookup', 'labels+conf', 'grouped', 'cloud',
              'class cloud', 'class points')
    lines = [(row['size'], f'{row["labels_median_ms"]:.2f}',
              f'{row["grouped_labels_median_ms"]:.2f}', f'{row["confidence_median_ms"]:.2f}',
              f'{row["grouped_confidence_median_ms"]:.2f}', f'{row["cloud_median_ms"]:.2f}',
              f'{row["class_cloud_median_ms"]:.2f}',
              f'{row["class_points"]:,} {row["class"]}') for row in rows]
    if rows:
        cpu = rows[0]['cpu']
        print(f"{cpu['name']} ({' '.join(cpu['isa'])}), {rows[0]['threads']} threads")
    print('medians in ms; +lookup: labels through the label map; grouped: grouped labels and '
          'confidence')
    print('\n'.join(aligned_lines(header, lines)))


def run(args: argparse.Namespace) -> int:
    """Measure, print and write the rows."""
    from espnet_ros.tools import groups_bench  # PyTorch: only for this command

    options = {'model': args.model}
    if args.label_map is not None:
        options['label_map'] = args.label_map
    rows = groups_bench.run(args.size or DEFAULT_SIZES, args.repeats, args.warmup, **options)
    print_table(rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + '\n')
    return 0
