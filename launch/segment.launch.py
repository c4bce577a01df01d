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

Several cameras on one model (README, "Several cameras"), each camera c on c/image:

    ros2 launch espnet_ros segment.launch.py cameras:=[front,rear]

With a registered depth image, for the labelled cloud (README, "3D: labelled point clouds"):

    ros2 launch espnet_ros segment.launch.py image:=/camera/color/image_raw \
        depth_image:=/camera/aligned_depth_to_color/image_raw \
        depth_camera_info:=/camera/aligned_depth_to_color/camera_info \
        publish_points:=true publish_confidence:=true confidence_encoding:=mono8

Parameters come from ``params_file`` (default: the package's config/segment.yaml); every node
parameter is also a launch argument, which overrides its parameter when given. ``camera_info``
defaults to the CameraInfo beside the image topic (image_transport's convention). Every
argument is checked before anything starts; a segmenter that exits with an error ends the
launch with a non-zero status.
"""

from launch import LaunchContext, LaunchDescription
from launch.action import Action
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from espnet_ros.ros.launching import (camera_info_topic, end_launch_on_failure, existing_file,
                                      model_registry, model_registry_argument,
                                      parameter_arguments, parameter_overrides,
                                      parameter_overrides_for_cameras, rviz_requested)

# The arguments that name the single camera's topics, with their defaults: refused beside
# cameras:= (each camera c has c/image, c/camera_info, c/depth/...).
SINGLE_CAMERA_ARGUMENTS = {'image': 'image', 'camera_info': '',
                           'depth_image': 'depth/image', 'depth_camera_info': 'depth/camera_info'}


def launch_setup(context: LaunchContext) -> list[Action]:
    """Check every argument, then return the segmenter and (optionally) rviz2."""
    registry = model_registry(context)  # before model:= is checked against the registry
    overrides = parameter_overrides(context)
    parameter_overrides_for_cameras(context, overrides, SINGLE_CAMERA_ARGUMENTS)
    params_file = existing_file('params_file', context)
    use_rviz = rviz_requested(context)
    namespace = LaunchConfiguration('namespace').perform(context)
    image = LaunchConfiguration('image').perform(context)
    camera_info = LaunchConfiguration('camera_info').perform(context) or camera_info_topic(image)
    segmenter = Node(
        package='espnet_ros', executable='segmenter', name='segmenter', namespace=namespace,
        output='screen', parameters=[params_file, overrides],
        remappings=[('image', image), ('image/compressed', image + '/compressed'),
                    ('camera_info', camera_info),
                    ('depth/image', LaunchConfiguration('depth_image')),
                    ('depth/camera_info', LaunchConfiguration('depth_camera_info'))])
    actions = [*registry, *end_launch_on_failure(segmenter), segmenter]
    if use_rviz:
        # The display topics in segment.rviz are relative: the namespace places them.
        share = FindPackageShare('espnet_ros').perform(context)
        actions.append(Node(package='rviz2', executable='rviz2', name='rviz2',
                            namespace=namespace, output='screen',
                            arguments=['-d', f'{share}/config/segment.rviz']))
    return actions


def generate_launch_description() -> LaunchDescription:
    """Return the launch arguments and the checked set-up of the segmenter and rviz2."""
    arguments = parameter_arguments() + [
        model_registry_argument(),
        DeclareLaunchArgument('image', default_value=SINGLE_CAMERA_ARGUMENTS['image'],
                              description='camera image topic to segment'),
        DeclareLaunchArgument('camera_info', default_value='',
                              description='CameraInfo topic of that camera; empty: the '
                              'camera_info beside the image topic'),
        DeclareLaunchArgument('depth_image', default_value=SINGLE_CAMERA_ARGUMENTS['depth_image'],
                              description='depth image registered to the camera (16UC1 mm '
                              'or 32FC1 m), read when publish_points is true'),
        DeclareLaunchArgument('depth_camera_info',
                              default_value=SINGLE_CAMERA_ARGUMENTS['depth_camera_info'],
                              description='CameraInfo topic of that depth image'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the node, its outputs and rviz2'),
        DeclareLaunchArgument('params_file',
                              default_value=PathJoinSubstitution([
                                  FindPackageShare('espnet_ros'), 'config', 'segment.yaml']),
                              description='YAML file of segmenter parameters'),
        DeclareLaunchArgument('use_rviz', default_value='false',
                              description='start rviz2 (not a dependency: install it first) '
                              'showing the overlay and the colours'),
    ]
    return LaunchDescription(arguments + [OpaqueFunction(function=launch_setup)])
