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
Launch the segmenter on a camera topic, optionally with rviz2.

    ros2 launch espnet_ros segment.launch.py image:=/front/image_raw model:=espnet_p2q8_camvid

Parameters come from ``params_file`` (default: the package's config/segment.yaml); a launch
argument given on the command line overrides its parameter. Values are converted with
int()/float(), never evaluated as Python.
"""

from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

# Launch argument -> (parameter type, description); the argument has the parameter's name.
PARAMETER_ARGUMENTS = {
    'model': (str, 'registry name of the network (espnet-ros models)'),
    'input_width': (int, 'network input width in pixels; 0 = from the height, training aspect'),
    'input_height': (int, 'network input height in pixels; 0 = from the width, training aspect'),
    'max_rate': (float, 'most frames per second to process; 0 = no limit'),
    'device': (str, 'auto, cpu, cuda or cuda:N'),
    'precision': (str, 'auto, fp32, fp16, bf16 or mixed'),
}


def given_overrides(context: LaunchContext) -> dict:
    """Return the parameters whose launch arguments were given, converted to their types."""
    overrides = {}
    for name, (value_type, _) in PARAMETER_ARGUMENTS.items():
        text = LaunchConfiguration(name).perform(context)
        if text != '':
            try:
                overrides[name] = value_type(text)
            except ValueError:
                raise ValueError(f'launch argument {name}:={text!r} is not a '
                                 f'{value_type.__name__}') from None
    return overrides


def segmenter_node(context: LaunchContext) -> list:
    """Return the segmenter with the parameter file, the overrides and the remappings."""
    image = LaunchConfiguration('image').perform(context)
    return [Node(
        package='espnet_ros', executable='segmenter', name='segmenter',
        namespace=LaunchConfiguration('namespace'), output='screen',
        parameters=[LaunchConfiguration('params_file'), given_overrides(context)],
        remappings=[('image', image), ('image/compressed', image + '/compressed'),
                    ('camera_info', LaunchConfiguration('camera_info'))])]


def generate_launch_description() -> LaunchDescription:
    """Return the launch arguments, the segmenter and (optionally) rviz2."""
    share = FindPackageShare('espnet_ros')
    arguments = [DeclareLaunchArgument(name, default_value='',
                                       description=f'{description} (default: params_file)')
                 for name, (_, description) in PARAMETER_ARGUMENTS.items()]
    arguments += [
        DeclareLaunchArgument('image', default_value='image',
                              description='camera image topic to segment'),
        DeclareLaunchArgument('camera_info', default_value='camera_info',
                              description='CameraInfo topic of that camera'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node and its outputs'),
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([share, 'config',
                                                                  'segment.yaml']),
                              description='YAML file of segmenter parameters'),
        DeclareLaunchArgument('use_rviz', default_value='false',
                              description='start rviz2 showing the overlay and colours'),
    ]
    rviz = Node(
        package='rviz2', executable='rviz2', name='rviz2', output='screen',
        arguments=['-d', PathJoinSubstitution([share, 'config', 'segment.rviz'])],
        condition=IfCondition(LaunchConfiguration('use_rviz')))
    return LaunchDescription(arguments + [OpaqueFunction(function=segmenter_node), rviz])
