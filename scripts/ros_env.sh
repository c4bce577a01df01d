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

# DDS isolation for demos, tests and CI. Source it (`. scripts/ros_env.sh`), don't run it.
# Every participant started afterwards talks over shared memory and loopback UDP only, so a
# run neither sends DDS traffic onto the LAN nor sees other machines' topics.

_espnet_ros_profile="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)/config/fastdds_localhost.xml"
if [ ! -f "${_espnet_ros_profile}" ]; then
  echo "ros_env.sh: missing ${_espnet_ros_profile}; refusing to set up DDS" >&2
  unset _espnet_ros_profile
  return 1 2>/dev/null || exit 1
fi

export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
# Fast DDS 2.x (Humble, Jazzy) reads the first name, Fast DDS 3.x the second.
export FASTRTPS_DEFAULT_PROFILES_FILE="${_espnet_ros_profile}"
export FASTDDS_DEFAULT_PROFILES_FILE="${_espnet_ros_profile}"
unset _espnet_ros_profile

# Two locks on the same door: the discovery range keeps discovery on this host, and the
# profile limits the transports to shared memory and UDP on 127.0.0.1. On Jazzy the LOCALHOST
# range also makes rmw_fastrtps open ephemeral *send* sockets on every interface; the
# listening (discovery and data) ports stay on 127.0.0.1 and every packet goes to 127.0.0.1
# (test/test_dds_isolation.py checks the listening side on every run).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
if [ "${ROS_DISTRO:-}" = humble ]; then
  export ROS_LOCALHOST_ONLY=1
else
  unset ROS_LOCALHOST_ONLY
fi
# A discovery server, super client or Fast DDS environment file from the user's shell would
# send discovery to other hosts.
unset ROS_STATIC_PEERS ROS_DISCOVERY_SERVER ROS_SUPER_CLIENT FASTDDS_ENVIRONMENT_FILE
