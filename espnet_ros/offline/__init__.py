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
Offline segmentation of recordings: rosbag2 bags and video files, into new bags and videos.

A room of its own because it is neither live streaming nor ROS plumbing: bags are read and
written with ``rosbags`` (pure Python, no ROS install, no DDS), which is not rclpy, so this
room stays a core room and imports no ROS package. Frames go through the same decoding,
engine and rendering as the node (:mod:`espnet_ros.imaging`), so a frame gets the same
labels here as live.
"""
