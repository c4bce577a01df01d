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

"""Plain-text tables of the commands' output: columns two spaces apart, padded to fit."""

from typing import Sequence


def aligned_lines(header: Sequence[str], rows: Sequence[Sequence[str]], *,
                  left: int = 0) -> list[str]:
    """
    Return the header and each row as a line, every column as wide as its widest cell.

    The first ``left`` columns (names) are aligned left, the others (figures) right; a line
    ends at its last character, with no padding after it.
    """
    lines = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(cell) for cell in column) for column in zip(*lines)]
    return ['  '.join(cell.ljust(width) if column < left else cell.rjust(width)
                      for column, (cell, width) in enumerate(zip(line, widths))).rstrip()
            for line in lines]
