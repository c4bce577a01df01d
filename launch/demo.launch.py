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

    ros2 launch espnet_ros demo.launch.py source:=/path/to/frames [use_rviz:=true]

``source`` is a folder of images or a video file (``espnet-ros fetch --samples`` puts the
XX
(``-s`` lists them); ``namespace`` places the player and the segmenter together. rviz2 is not
a dependency of the package, so it starts only with ``use_rviz:=true``.
"""

from launch import LaunchContext, LaunchDescription
from launch.action import Action
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from espnet_ros.ros.launching import end_launch_on_failure, existing_path, LaunchArgumentError


def demo_setup(context: LaunchContext) -> list[Action]:
    """Check the player's arguments, then return segment.launch.py and the player."""
    source = existing_path('source', context)
    rate_text = LaunchConfiguration('rate').perform(context)
    try:
        rate = float(rate_text)
    except ValueError:
        raise LaunchArgumentError(f'launch argument rate:={rate_text!r} is not a number') from None
    if not rate > 0:
        raise LaunchArgumentError(f'launch argument rate:={rate_text!r} must be above 0')
    player = Node(package='espnet_ros', executable='image_player', name='image_player',
                  namespace=LaunchConfiguration('namespace').perform(context), output='screen',
                  parameters=[{'source': source, 'rate': rate}])
    segment = IncludeLaunchDescription(PythonLaunchDescriptionSource(
        PathJoinSubstitution([FindPackageShare('espnet_ros'), 'launch', 'segment.launch.py'])))
    # segment.launch.py checks its own arguments when visited, before the player starts.
    return [segment, *end_launch_on_failure(player), player]


def generate_launch_description() -> LaunchDescription:
    """Return the demo's arguments and its checked set-up."""
    return LaunchDescription([
        DeclareLaunchArgument('source', description='folder of images or a video file'),
        DeclareLaunchArgument('rate', default_value='10.0', description='camera rate (Hz)'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the player, the segmenter and rviz2'),
        OpaqueFunction(function=demo_setup),
    ])
