#!/usr/bin/env bash
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

# The main job: the image player on sample frames feeding the segmenter node, measured over
# DDS for a fixed number of frames. Prints frames, rate and latency; saves a few overlays in
# out/demo/. Extra arguments go to espnet-ros-live (e.g. --frames 200 --rate 15).
#
# With ../shared beside the repository it uses the CamVid val frames and the official
# checkpoints there; without it, it fetches the checkpoint and a sample frame from the
# authors' repositories (sha256-verified) into models/ first.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

scripts/setup_env.sh
. scripts/ros_env.sh
# A private DDS domain, so that two demos on one machine do not see each other.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( $$ % 100 + 1 ))}"

SHARED="${ROOT}/../shared"
if [ -d "${SHARED}/weights" ] && [ -d "${SHARED}/data/camvid/val" ]; then
  export ESPNET_ROS_MODELS="${SHARED}/weights"
  model=espnet_p2q8_camvid
  source_frames="${SHARED}/data/camvid/val"
else
  model=espnet_p2q8_cityscapes
  .venv/bin/espnet-ros fetch --model "${model}" --samples
  source_frames="${ROOT}/models/samples"
fi

echo "run_demo: ${model} on ${source_frames}, DDS domain ${ROS_DOMAIN_ID} (localhost only)"
# A few seconds of frames: the node uses a compiled graph already in the cache, but does not
# start a build of minutes that the end of the demo would cut short (espnet-ros compile does).
exec .venv/bin/espnet-ros-live --source "${source_frames}" --model "${model}" \
  --frames 50 --rate 10 --compile-mode cached --out out/demo --save 5 "$@"
