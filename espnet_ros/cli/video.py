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


"""``espnet-ros video``: segment a video file into an overlay video at the same frame rate."""

import argparse
from pathlib import Path

from espnet_ros.cli.common import (add_engine_arguments, add_label_map_argument,
                                   add_offline_arguments, output_request, run_offline)
from espnet_ros.compat import SubParsers
from espnet_ros.offline.video import VideoJob, VideoSegmentation


def register(subparsers: SubParsers) -> None:
    """Add the ``video`` subcommand."""
    parser = subparsers.add_parser(
        'video', help='segment a video file into an overlay video',
        description='Write the overlay of every frame of a video (anything OpenCV reads) to '
                    'a new video at the same size and frame rate.')
    parser.add_argument('source', type=Path, metavar='IN', help='video file')
    parser.add_argument('--out', type=Path, required=True,
                        help='output video (.mp4, .m4v, .mov, .avi or .mkv)')
    parser.add_argument('--labels-dir', type=Path,
                        help="also write each frame's class ids as DIR/frame_NNNNNN.png")
    add_engine_arguments(parser)
    add_label_map_argument(parser)
    add_offline_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Check the input and output, load the model, segment, print the summary."""
    job = VideoJob(source=args.source, out=args.out, labels_dir=args.labels_dir,
                   request=output_request(args), batch=args.batch, force=args.force,
                   progress=not args.no_progress)
    segmentation = VideoSegmentation(job)
    return run_offline(segmentation, args, f'{args.source}: {segmentation.frame_count or "?"} '
                       f'frames at {segmentation.fps:g} frames/s -> {args.out}')
