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

"""``espnet-ros bench-cloud``: both paths give the same bytes; the command writes its rows."""

import json
from pathlib import Path

import numpy as np
import pytest

from espnet_ros.cli import main
from espnet_ros.imaging.cloud import pack_rgb
from espnet_ros.tools import cloud_bench
from espnet_ros.zoo.registry import DEFAULT_MODEL, get_spec


def test_ours_and_create_cloud_build_the_same_message() -> None:
    label_rgb = pack_rgb(get_spec(DEFAULT_MODEL).dataset.palette)
    data = cloud_bench.scene((64, 48), len(label_rgb))
    ours, library = cloud_bench.ours(data, label_rgb), cloud_bench.library(data, label_rgb)
    cloud_bench._same(ours, library)
    assert (ours.height, ours.width) == (48, 64)
    # The check can fail: one flipped byte is found.
    library.data[5] ^= 1
    with pytest.raises(AssertionError, match='bytes'):
        cloud_bench._same(ours, library)


def test_command_prints_and_writes_one_row_per_size(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / 'rows.json'
    assert main(['bench-cloud', '--size', '32x24', '--size', '16x8', '--repeats', '2',
                 '--warmup', '0', '--json', str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [row['size'] for row in rows] == ['32x24', '16x8']
    assert all(row['ours_median_ms'] > 0 and np.isfinite(row['speedup']) for row in rows)
    assert 'create_cloud ms' in capsys.readouterr().out
