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
Fine-tuning an official network on the user's own labelled frames; no ROS.

A room of its own because training is a concern apart from running a network: it reads
folders of image/label pairs, augments them, weighs the classes, runs the optimisation
loop and writes a model folder that :mod:`espnet_ros.zoo` then serves by name like the
official checkpoints. Nothing here runs unless ``espnet-ros train`` (or a caller) asks.
"""
