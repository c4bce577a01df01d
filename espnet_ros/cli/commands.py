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
The ``espnet-ros`` subcommands by name: the module that implements each, and its one-line help.

Light on purpose: ``espnet-ros --help`` lists the commands from this table alone, without
importing PyTorch, OpenCV or the registry; only the command that runs imports its module.
"""

# name: (module in espnet_ros.cli, help)
COMMANDS = {
    'models': ('registry_tools', "list the registry and checkpoint status, or one model's "
                                 'classes'),
    'fetch': ('registry_tools', 'fetch official checkpoints (and sample frames), verifying '
                                'sha256'),
    'segment': ('segment', 'segment image files or folders'),
    'eval': ('evaluate', 'mean IoU on a labelled image folder'),
    'bench': ('bench', 'speed of every fast path against eager fp32 PyTorch'),
    'export': ('export', 'export models to ONNX (ONNX Runtime, TensorRT)'),
    'compile': ('compile', "build the node's compiled graph into the cache ahead of time"),
    'train': ('train', 'fine-tune an official model on your own labelled frames'),
    'bench-cloud': ('cloud_bench', 'labelled point cloud build against '
                                   'sensor_msgs_py.create_cloud'),
    'bench-groups': ('groups_bench', 'cost of label groups and of a per-class cloud'),
    'bench-startup': ('startup_bench', 'seconds to the first labels and to compiled speed, '
                                       'from the graph cache or not'),
    'bench-subnormals': ('subnormal_bench', 'outputs with subnormal weights set to zero '
                                            'against the checkpoint as loaded'),
    'bag': ('bag', 'segment a rosbag2 bag (sqlite3 or MCAP) into a new bag'),
    'video': ('video', 'segment a video file into an overlay video'),
}
# The shell's exit status for a command ended by Ctrl-C (128 + SIGINT).
INTERRUPTED_STATUS = 130


def help_of(name: str) -> str:
    """Return the one-line help of subcommand ``name``."""
    return COMMANDS[name][1]
