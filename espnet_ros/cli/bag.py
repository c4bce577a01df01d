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


"""``espnet-ros bag``: segment a recorded rosbag2 bag into a new bag, without ROS or DDS."""

import argparse
from pathlib import Path

from espnet_ros.cli.common import (add_engine_arguments, add_label_map_argument,
                                   add_offline_arguments, output_request, run_offline,
                                   seconds_argument)
from espnet_ros.compat import SubParsers
from espnet_ros.offline.bag import BagJob, BagSegmentation, DEFAULT_OUTPUTS, OUTPUTS, STORAGES
from espnet_ros.runtime.options import DEFAULT_DEPTH_SYNC_SLOP_S
from espnet_ros.streaming.clouds import CloudSettings
from espnet_ros.streaming.outputs import OutputSettings


def register(subparsers: SubParsers) -> None:
    """Add the ``bag`` subcommand."""
    parser = subparsers.add_parser(
        'bag', help='segment a rosbag2 bag (sqlite3 or MCAP) into a new bag',
        description='Read camera frames from a rosbag2 bag and write a new bag with the '
                    "segmentation under the camera's namespace (<ns>/segmentation/labels, "
                    '...), as the node publishes it, plus the input topics.')
    parser.add_argument('source', type=Path, metavar='IN',
                        help='bag folder, or its .db3 or .mcap file')
    parser.add_argument('--image-topic', required=True, action='append',
                        help='sensor_msgs/Image or sensor_msgs/CompressedImage topic; give it '
                             'once per camera to segment several cameras in one pass, '
                             "batched (each camera's outputs under its own namespace)")
    parser.add_argument('--out', type=Path, required=True, help='output bag folder')
    parser.add_argument('--outputs', default=','.join(DEFAULT_OUTPUTS),
                        help=f"comma-separated, from {', '.join(OUTPUTS)} "
                             f"(default {','.join(DEFAULT_OUTPUTS)}, as the node)")
    parser.add_argument('--only-outputs', action='store_true',
                        help='write only the segmentation, not the input topics')
    parser.add_argument('--storage', choices=tuple(STORAGES),
                        help="output storage (default: the input's)")
    parser.add_argument('--start', type=seconds_argument, metavar='S',
                        help="first second to segment, from the bag's start")
    parser.add_argument('--end', type=seconds_argument, metavar='S',
                        help="second to stop at, from the bag's start")
    parser.add_argument('--camera-info-topic',
                        help='sensor_msgs/CameraInfo topic for segmentation/camera_info '
                             "(default: the camera's camera_info, when the bag has it)")
    parser.add_argument('--depth-topic',
                        help='sensor_msgs/Image depth topic registered to the camera: adds '
                             'segmentation/points, the labelled cloud of each frame')
    parser.add_argument('--depth-camera-info-topic',
                        help="the depth camera's sensor_msgs/CameraInfo topic (default: "
                             'camera_info beside the depth topic)')
    parser.add_argument('--depth-sync-slop', type=float, default=DEFAULT_DEPTH_SYNC_SLOP_S,
                        metavar='S', help='most seconds between a frame and its depth image '
                                          f'(default {DEFAULT_DEPTH_SYNC_SLOP_S}, as the node)')
    clouds = CloudSettings()
    parser.add_argument('--min-depth', type=float, default=clouds.min_depth, metavar='M',
                        help=f'nearer depths give NaN points (default {clouds.min_depth})')
    parser.add_argument('--max-depth', type=float, default=clouds.max_depth, metavar='M',
                        help=f'farther depths give NaN points (default {clouds.max_depth})')
    parser.add_argument('--points-stride', type=int, default=clouds.stride, metavar='N',
                        help='keep every N-th row and column of the cloud (default '
                             f'{clouds.stride})')
    parser.add_argument('--namespace',
                        help="namespace of the outputs (default: the image topic's camera "
                             'namespace, /cam for /cam/image_raw)')
    add_engine_arguments(parser)
    add_label_map_argument(parser)
    add_offline_arguments(parser)
    # --batch not given: one frame per camera in each network call.
    parser.set_defaults(run=run, batch=None)


def run(args: argparse.Namespace) -> int:
    """Check the input and output, load the model, segment, print the summary."""
    topics = args.image_topic
    job = BagJob(source=args.source, image_topic=topics[0], more_image_topics=tuple(topics[1:]),
                 out=args.out,
                 outputs=tuple(name.strip() for name in args.outputs.split(',') if name.strip()),
                 request=output_request(args), only_outputs=args.only_outputs,
                 storage=args.storage, start=args.start, end=args.end,
                 batch=args.batch or len(topics),
                 namespace=args.namespace, force=args.force,
                 camera_info_topic=args.camera_info_topic, depth_topic=args.depth_topic,
                 depth_info_topic=args.depth_camera_info_topic,
                 settings=OutputSettings(depth_sync_slop_s=args.depth_sync_slop,
                                         clouds=CloudSettings(min_depth=args.min_depth,
                                                              max_depth=args.max_depth,
                                                              stride=args.points_stride)),
                 progress=not args.no_progress)
    segmentation = BagSegmentation(job)
    namespaces = ', '.join(f'{camera.namespace}/segmentation'
                           for camera in segmentation.cameras.values())
    return run_offline(segmentation, args, f'{args.source}: {segmentation.frame_count} frames '
                       f'on {", ".join(topics)} -> {args.out} under {namespaces}')
