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


"""ESPNet and ESPNetv2 in pure PyTorch; no ROS import, no I/O."""

from espnet_ros.networks.espnet import (ESPNet, espnet_architecture_for_classes,
                                        espnet_checkpoint_filter, ESPNetC)
from espnet_ros.networks.espnetv2 import espnetv2_checkpoint_filter, ESPNetv2Segmentation
from espnet_ros.networks.subnormals import count_subnormals, flush_subnormals

__all__ = ['ESPNet', 'ESPNetC', 'espnet_architecture_for_classes', 'espnet_checkpoint_filter',
           'ESPNetv2Segmentation', 'espnetv2_checkpoint_filter', 'count_subnormals',
           'flush_subnormals']
