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

"""ament_python build of espnet_ros: the Python package plus its share/ data."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'espnet_ros'

setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    # The C source of the fused labels head, compiled at run time (runtime/phase_labels.py).
    package_data={PACKAGE: ['runtime/*.c', 'runtime/*.cpp']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml') + glob('config/*.rviz')
         + glob('config/*.xml')),
        ('share/' + PACKAGE + '/models', glob('models/*.json')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='espnet_ros maintainers',
    maintainer_email='maintainers@espnet-ros.dev',
    description='ESPNet-family semantic segmentation for ROS 2 cameras.',
    license='Apache-2.0',
    tests_require=['pytest'],
    entry_points={
        'console_scripts': [
            'espnet-ros = espnet_ros.cli:main',
            'segmenter = espnet_ros.ros.segmenter_main:main',
            'image_player = espnet_ros.ros.image_player:main',
            'espnet-ros-live = espnet_ros.tools.live_run:main',
            'espnet-ros-soak = espnet_ros.tools.soak:main',
        ],
    },
)
