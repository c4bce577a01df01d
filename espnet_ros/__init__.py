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
ESPNet-family semantic segmentation for ROS 2 cameras.

One folder per concern, dependencies pointing one way (see the README's architecture):
``networks`` (the ESPNet and ESPNetv2 modules), ``zoo`` (the model registry and checkpoint
files), ``runtime`` (the engine and what it runs on), ``imaging`` (image codec, rendering,
the per-frame pipeline, metrics), ``streaming`` (the live worker, its mailbox and
statistics) form the core and import no ROS; ``ros`` (nodes and messages), ``tools``
(benchmark, live run, soak) and ``cli`` (the espnet-ros command) build on it.
"""

__version__ = '0.1.0'
