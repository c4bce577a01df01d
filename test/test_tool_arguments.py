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

"""The tools refuse a count they cannot use with a reason, before they start anything."""

from typing import Callable

import pytest

from espnet_ros.tools import batch_bench, layer_profile, live_run, soak

LIVE = ['--source', 'frames']
CASES = [
    (live_run.parse_args, [*LIVE, '--frames', '0'],
     'argument --frames: must be at least 1, got 0'),
    (live_run.parse_args, [*LIVE, '--warmup', '-1'],
     'argument --warmup: must be at least 0, got -1'),
    (live_run.parse_args, [*LIVE, '--save', 'all'], "argument --save: 'all' is not an integer"),
    (soak.parse_args, ['--frames', '9'], 'argument --frames: must be at least 10, got 9'),
    (soak.parse_args, ['--report-every', '0'],
     'argument --report-every: must be at least 1, got 0'),
    (layer_profile.main, ['--frames', '0'], 'argument --frames: must be at least 1, got 0'),
    (layer_profile.main, ['--rows', '-3'], 'argument --rows: must be at least 1, got -3'),
    (layer_profile.main, ['--threads', '-1'], 'argument --threads: must be at least 0, got -1'),
    (batch_bench.main, ['--cameras', '1', '0'], 'argument --cameras: must be at least 1, got 0'),
    (batch_bench.main, ['--repeats', '0'], 'argument --repeats: must be at least 1, got 0'),
]


@pytest.mark.parametrize('parse, arguments, reason', CASES,
                         ids=[f'{parse.__module__.rsplit(".", 1)[-1]} {" ".join(arguments)}'
                              for parse, arguments, _ in CASES])
def test_tools_refuse_counts_with_a_reason(parse: Callable, arguments: list, reason: str,
                                           capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as end:
        parse(arguments)
    assert end.value.code == 2
    assert reason in capsys.readouterr().err
