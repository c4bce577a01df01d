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
The demo: the image player on sample frames feeding segment.launch.py.

    ros2 launch espnet_ros demo.launch.py [source:=/path/to/frames] [use_rviz:=true]

``source`` is a folder of images or a video file. Left out, the demo plays the sample frames:
the CamVid frames of ``../shared`` beside the checkout (through ``espnet_p2q8_camvid`` unless
``model:=`` says otherwise), else those ``espnet-ros fetch --samples`` fetched; with neither
it stops, naming that command. It takes every argument of segment.launch.py too (``-s``
lists them); ``namespace`` places the player and the segmenter together. rviz2 is not a
dependency of the package, so it starts only with ``use_rviz:=true``.
"""

from launch import LaunchContext, LaunchDescription
from launch.action import Action
from launch.actions import (DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction,
                            SetLaunchConfiguration)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from espnet_ros.ros.launching import (demo_frames, end_launch_on_failure, LaunchArgumentError,
                                      parse_names)

# The player's frames and rate, checked before anything starts.
SOURCE, RATE = 'demo_source', 'demo_rate'


def demo_check(context: LaunchContext) -> list[Action]:
    """Check the player's arguments; pick the sample frames (and their model) if no source."""
    if parse_names(LaunchConfiguration('cameras', default='').perform(context)):
        raise LaunchArgumentError('the demo plays one camera: cameras:= is for '
                                  'segment.launch.py (README, "Several cameras")')
    source, model = demo_frames(LaunchConfiguration('source').perform(context))
    rate_text = LaunchConfiguration('rate').perform(context)
    try:
        rate = float(rate_text)
    except ValueError:
        raise LaunchArgumentError(f'launch argument rate:={rate_text!r} is not a number') from None
    if not rate > 0:
        raise LaunchArgumentError(f'launch argument rate:={rate_text!r} must be above 0')
    actions = [SetLaunchConfiguration(SOURCE, source), SetLaunchConfiguration(RATE, str(rate))]
    if model and not LaunchConfiguration('model', default='').perform(context):
        actions.append(SetLaunchConfiguration('model', model))
    return actions


def player(context: LaunchContext) -> list[Action]:
    """Return the image player, started after segment.launch.py checked its arguments."""
    node = Node(package='espnet_ros', executable='image_player', name='image_player',
                namespace=LaunchConfiguration('namespace').perform(context), output='screen',
                parameters=[{'source': LaunchConfiguration(SOURCE).perform(context),
                             'rate': float(LaunchConfiguration(RATE).perform(context))}])
    return [*end_launch_on_failure(node), node]


def generate_launch_description() -> LaunchDescription:
    """Return the demo's arguments, segment.launch.py's, and the checked set-up."""
    return LaunchDescription([
        DeclareLaunchArgument('source', default_value='',
                              description='folder of images or a video file; empty: the '
                              'sample frames (../shared CamVid frames, else those of '
                              'espnet-ros fetch --samples)'),
        DeclareLaunchArgument('rate', default_value='10.0', description='camera rate (Hz)'),
        OpaqueFunction(function=demo_check),
        # Included as it is, so that -s lists its arguments; it checks them when visited,
        # before the player starts.
        IncludeLaunchDescription(PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare('espnet_ros'), 'launch',
                                  'segment.launch.py']))),
        OpaqueFunction(function=player),
    ])
