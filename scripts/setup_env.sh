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

# The one environment step behind ./scripts/run_demo.sh and ./scripts/test.sh: a .venv in the
# repository root with the pinned dependencies of scripts/requirements*.txt and espnet_ros
# installed editable. Idempotent: it does nothing while the stamp in .venv still matches the
# requirement files, setup.py and setup.cfg.
#
#   scripts/setup_env.sh          create or update .venv
#   scripts/setup_env.sh --lock   rewrite scripts/constraints.txt from the current .venv
#
# With a system ROS 2 sourced (ROS_DISTRO set and rclpy importable by python3) the venv sees
# the system site-packages and the ROS wheels of requirements-ros.txt are not installed.
# Without one, the ROS 2 packages PyPI lacks (launch, launch_ros, launch_testing, ros2launch,
# vision_msgs, ...: requirements-ros-wheels.txt) come from ../shared/wheels when it is there,
# with the everyday ros2 verbs (topic, param, node, service, lifecycle, interface, run, action).

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROOT}/.venv"
PY="${VENV}/bin/python"
REQ="${ROOT}/scripts/requirements.txt"
REQ_ROS="${ROOT}/scripts/requirements-ros.txt"
REQ_WHEELS="${ROOT}/scripts/requirements-ros-wheels.txt"
WHEELS="$(dirname "${ROOT}")/shared/wheels"
LOCK="${ROOT}/scripts/constraints.txt"
STAMP="${VENV}/.espnet_ros_setup.sha256"
EDITABLE_MODE=compat

say() { echo "[setup_env] $*"; }

write_lock() {
  # Editable installs and distributions nested inside the ROS wheels (installer None) are not
  # installable by name; torch's local tag (+cpu) is dropped so the pin also fits PyPI's wheel.
  "${PY}" -m pip inspect 2>/dev/null | "${PY}" -c '
import json
import sys

pins = []
for dist in json.load(sys.stdin)["installed"]:
    meta = dist["metadata"]
    if dist.get("installer") != "pip" or dist.get("direct_url") or meta["name"] == "pip":
        continue
    pins.append("%s==%s" % (meta["name"], meta["version"].split("+")[0]))
print("# Full lock of .venv, applied as pip constraints by scripts/setup_env.sh.")
print("# Regenerate with: scripts/setup_env.sh --lock")
print("\n".join(sorted(pins, key=str.lower)))
' > "${LOCK}"
  say "wrote $(grep -vc '^#' "${LOCK}") pins to ${LOCK#"${ROOT}"/}"
}

if [ "${1:-}" = --lock ]; then
  write_lock
  exit 0
fi

system_ros=0
if [ -n "${ROS_DISTRO:-}" ] && python3 -c 'import rclpy' >/dev/null 2>&1; then
  system_ros=1
fi

shared_wheels=0
if [ "${system_ros}" = 0 ] && [ -d "${WHEELS}" ]; then
  shared_wheels=1
fi

stamp="$(
  {
    echo "system_ros=${system_ros} shared_wheels=${shared_wheels}"
    echo "editable_mode=${EDITABLE_MODE}"
    python3 --version
    cat "${REQ}" "${REQ_ROS}" "${REQ_WHEELS}" "${LOCK}" "${ROOT}/setup.py" "${ROOT}/setup.cfg" \
      "${BASH_SOURCE[0]}"
    if [ "${shared_wheels}" = 1 ] && [ -f "${WHEELS}/SHA256SUMS" ]; then
      cat "${WHEELS}/SHA256SUMS"
    fi
  } | sha256sum | cut -d' ' -f1
)"

if [ -f "${STAMP}" ] && [ "$(cat "${STAMP}")" = "${stamp}" ] \
    && "${PY}" -c 'import sys' >/dev/null 2>&1; then
  say ".venv is up to date"
  exit 0
fi

start=${SECONDS}
if ! "${PY}" -c 'import sys' >/dev/null 2>&1; then
  venv_args=()
  if [ "${system_ros}" = 1 ]; then
    venv_args+=(--system-site-packages)
    say "system ROS 2 ${ROS_DISTRO} found: the venv uses its rclpy and messages"
  fi
  say "creating .venv with $(python3 --version)"
  python3 -m venv "${venv_args[@]}" "${VENV}"
fi

pip_install=("${PY}" -m pip install --disable-pip-version-check --progress-bar off -q)
# A pip configuration may list local indexes that lack most projects; pip warns once per
# project and index, which would bury this script's output.
quiet_index_warnings() { grep -v 'is ignored: it is neither a file nor a directory' >&2 || true; }
if [ "${system_ros}" = 1 ]; then
  # ROS's own Python modules are built against the system numpy, and ROS provides numpy and
  # OpenCV (package.xml: python3-numpy, python3-opencv), so those stay the system's.
  tmp="$(mktemp -d)"
  trap 'rm -rf "${tmp}"' EXIT
  grep -v -E '^(numpy|opencv-python-headless)==' "${REQ}" > "${tmp}/requirements.txt"
  python3 -c 'import numpy; print("numpy==" + numpy.__version__)' > "${tmp}/constraints.txt"
  say "installing scripts/requirements.txt (system numpy and OpenCV kept)"
  "${pip_install[@]}" -r "${tmp}/requirements.txt" -c "${tmp}/constraints.txt" \
    2> >(quiet_index_warnings)
else
  say "installing scripts/requirements.txt and requirements-ros.txt (a fresh .venv takes minutes)"
  "${pip_install[@]}" -r "${REQ}" -r "${REQ_ROS}" -c "${LOCK}" 2> >(quiet_index_warnings)
  if [ "${shared_wheels}" = 1 ]; then
    # Their declared dependencies name ROS packages as PyPI does not (ament_index_python is
    # ros-jazzy-ament-index-python there): --no-deps, with the plain ones in
    # requirements-ros.txt. --no-index keeps PyPI's unrelated 'launch' project out.
    say "installing the ROS 2 packages PyPI lacks from ${WHEELS}"
    "${pip_install[@]}" --no-deps --no-index --find-links "${WHEELS}" -r "${REQ_WHEELS}"
  else
    say "no ${WHEELS}: launch, launch_ros, vision_msgs, ... not installed; their tests skip"
  fi
fi

say "installing espnet_ros (editable)"
# No build isolation: setuptools is pinned in the venv, and isolation would fetch it again.
# editable_mode=compat puts the repository root on sys.path (a .pth entry) instead of
# setuptools' import hook, which Python consults only after sys.path: with the hook, a folder
# named espnet_ros beside a script or in the current folder (a checkout of this repository)
# was taken for the package, as an empty namespace package.
"${pip_install[@]}" --no-build-isolation --no-deps -e "${ROOT}" \
  --config-settings editable_mode="${EDITABLE_MODE}"

# The package in the venv's ament index, laid out as a colcon install lays it out, so that
# from the activated shell (AMENT_PREFIX_PATH holds .venv) `ros2 launch espnet_ros ...`,
# `ros2 run` and FindPackageShare find it with nothing to build. share/espnet_ros holds links
# to the source tree's files that setup.py installs there (edits show at once, as with colcon
# --symlink-install; one link per file, as ros2 launch does not look into linked folders), and
# lib/espnet_ros the nodes that launch_ros starts by package and executable name.
say "registering espnet_ros in the venv's ament index (share/espnet_ros, lib/espnet_ros)"
share="${VENV}/share/espnet_ros"
rm -rf "${share}" "${VENV}/lib/espnet_ros"
mkdir -p "${VENV}/share/ament_index/resource_index/packages" "${share}/launch" \
  "${share}/config" "${share}/models" "${VENV}/lib/espnet_ros"
: > "${VENV}/share/ament_index/resource_index/packages/espnet_ros"
ln -s "${ROOT}/package.xml" "${share}/package.xml"
for file in "${ROOT}"/launch/*.launch.py "${ROOT}"/config/*.yaml "${ROOT}"/config/*.rviz \
    "${ROOT}"/config/*.xml "${ROOT}"/models/*.json; do
  folder="$(basename "$(dirname "${file}")")"
  ln -s "${file}" "${share}/${folder}/$(basename "${file}")"
done
for executable in segmenter image_player espnet-ros espnet-ros-live espnet-ros-soak; do
  ln -s "${VENV}/bin/${executable}" "${VENV}/lib/espnet_ros/${executable}"
done

"${PY}" -c 'import rclpy, torch, cv2, numpy' \
  || { say "the new .venv cannot import rclpy/torch/cv2/numpy"; exit 1; }
echo "${stamp}" > "${STAMP}"
say "done in $((SECONDS - start)) s"
