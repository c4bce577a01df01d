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


# The quick start's third line: source it (`source scripts/activate.sh`) in any shell from
# which you want the venv's commands (espnet-ros, espnet-ros-live, espnet-ros-soak, segmenter,
# image_player), `ros2 launch espnet_ros ...` and the other ros2 verbs, and the demo's
# localhost-only DDS settings. It builds .venv first when missing
# (scripts/setup_env.sh) and keeps the checkpoints of ../shared/weights in view, as the demo does.

_espnet_ros_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
if ! "${_espnet_ros_root}/scripts/setup_env.sh"; then
  unset _espnet_ros_root
  return 1 2>/dev/null || exit 1
fi
# The venv's own activate script: PATH, VIRTUAL_ENV, the prompt, and `deactivate`.
. "${_espnet_ros_root}/.venv/bin/activate"
. "${_espnet_ros_root}/scripts/ros_env.sh"
# The venv is an ament prefix (the message wheels and espnet_ros, see setup_env.sh): `ros2
# launch espnet_ros ...`, `ros2 interface show` and `ros2 run` look packages up there. Put
# first, so that this checkout's package wins over one of a sourced workspace.
case ":${AMENT_PREFIX_PATH:-}:" in
  *":${_espnet_ros_root}/.venv:"*) ;;
  *) export AMENT_PREFIX_PATH="${_espnet_ros_root}/.venv${AMENT_PREFIX_PATH:+:${AMENT_PREFIX_PATH}}" ;;
esac
if [ -z "${ESPNET_ROS_MODELS:-}" ] && [ -d "${_espnet_ros_root}/../shared/weights" ]; then
  ESPNET_ROS_MODELS="$(cd "${_espnet_ros_root}/../shared/weights" && pwd)"
  export ESPNET_ROS_MODELS
  echo "activate.sh: checkpoints from ESPNET_ROS_MODELS=${ESPNET_ROS_MODELS}"
fi
if [ -z "${ESPNET_ROS_DATA:-}" ] && [ -d "${_espnet_ros_root}/../shared/data" ]; then
  ESPNET_ROS_DATA="$(cd "${_espnet_ros_root}/../shared/data" && pwd)"
  export ESPNET_ROS_DATA
  echo "activate.sh: sample frames from ESPNET_ROS_DATA=${ESPNET_ROS_DATA}"
fi
unset _espnet_ros_root
