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
The demo: the image player on sample frames feeding segment.launch.py, with rviz2.

    ros2 launch espnet_ros demo.launch.py source:=/path/to/frames

``source`` is a folder of images or a video file (``espnet-ros fetch --samples`` puts the
sample frames in the package's models/samples/).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    """Return the player, the segmenter and rviz2."""
    share = FindPackageShare('espnet_ros')
    player = Node(
        package='espnet_ros', executable='image_player', name='image_player',
        output='screen',
        parameters=[{'source': LaunchConfiguration('source'),
                     'rate': ParameterValue(LaunchConfiguration('rate'), value_type=float)}])
    segment = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, 'launch',
                                                            'segment.launch.py'])),
        launch_arguments={'model': LaunchConfiguration('model'),
                          'use_rviz': LaunchConfiguration('use_rviz')}.items())
    return LaunchDescription([
        DeclareLaunchArgument('source', description='folder of images or a video file'),
        DeclareLaunchArgument('rate', default_value='10.0', description='camera rate (Hz)'),
        DeclareLaunchArgument('model', default_value='',
                              description='registry name (default: the parameter file)'),
        DeclareLaunchArgument('use_rviz', default_value='true', description='start rviz2'),
        player, segment])
