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

"""The model zoo: the registry of pretrained models and their checkpoint files; no ROS."""

# The model the node, the launch files and every command use when none is named. Here, not in
# the registry module, so that naming it does not import PyTorch.
DEFAULT_MODEL = 'espnet_p2q8_cityscapes'
# Model folders, separated by ':'; searched after an explicit folder, before the package's.
MODELS_ENV = 'ESPNET_ROS_MODELS'
# A folder of sample data laid out like this project's shared data (cityscapes/*.png,
# camvid/val/*.png): the demo's default frames and the benchmark's agreement images. Installed
# code never guesses such a folder; scripts/activate.sh and the tests set it.
DATA_ENV = 'ESPNET_ROS_DATA'
