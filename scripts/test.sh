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

# The whole test suite: environment step, DDS isolation, pytest. Arguments go to pytest,
# e.g. `./scripts/test.sh -m linter` or `./scripts/test.sh test/test_packaging.py -x`.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

scripts/setup_env.sh
# shellcheck source=scripts/ros_env.sh
. scripts/ros_env.sh
# The whole test/ folder unless the arguments name test files or folders themselves.
paths=(test)
for arg in "$@"; do
  if [ -e "${arg%%::*}" ]; then
    paths=()
    break
  fi
done
exec .venv/bin/python -m pytest "${paths[@]}" -q "$@"
