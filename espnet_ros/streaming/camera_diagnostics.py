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

"""
The diagnostics of a segmenter serving several cameras: the totals, and each camera.

A pure function of two snapshots, like :func:`~espnet_ros.streaming.diagnostics.summarize`
for the single camera, whose figures each status repeats.
"""

from typing import Mapping, Optional

from espnet_ros.streaming.cameras import MultiStats
from espnet_ros.streaming.clouds import CloudStats
from espnet_ros.streaming.diagnostics import Level, MS_PER_S, summarize, Summary

TOTAL = ''  # the name of the totals' status among the cameras' statuses
BATCH_SIZES_KEY = 'batch sizes run (frames: batches)'
MAX_BATCH_KEY = 'max batch'
CAMERAS_KEY = 'cameras'
STALE_KEY = 'stale cameras'
P99_KEY = 'latency p99 (ms)'
SILENT_KEY = 'seconds since the last frame'
STALE = 'stale'


def summarize_cameras(previous: Optional[MultiStats], current: Optional[MultiStats], *,
                      previous_clouds: Optional[Mapping[str, Optional[CloudStats]]] = None,
                      clouds: Optional[Mapping[str, Optional[CloudStats]]] = None,
                      reloading: Optional[str] = None) -> dict[str, Summary]:
    """
    Return the totals' status (key ``TOTAL``) and each camera's, by camera name.

    A camera is WARN when its frames were rejected since ``previous`` (as for one camera) or
    when it went stale (silent for several of its frame periods); the totals are WARN when any
    camera is stale or rejected frames, naming them. A stale camera holds nobody back.
    """
    if current is None:
        return {TOTAL: summarize(None, None)}
    result: dict[str, Summary] = {}
    previous_clouds, clouds = previous_clouds or {}, clouds or {}
    stale = [name for name, camera in current.cameras.items() if camera.stale]
    for name, camera in current.cameras.items():
        before = previous.cameras.get(name) if previous is not None else None
        summary = summarize(before.stats if before is not None else None, camera.stats,
                            previous_clouds=previous_clouds.get(name),
                            clouds=clouds.get(name), reloading=reloading)
        values = summary.values + (
            (P99_KEY, f'{MS_PER_S * camera.latency_p99_s:.1f}'),
            (SILENT_KEY, f'{camera.silent_s:.1f}'))
        if camera.stale and summary.level == Level.OK:
            heard = ('no frame yet' if camera.stats.received == 0
                     else f'no frame for {camera.silent_s:.1f} s')
            summary = Summary(Level.WARN, f'{STALE}: {heard}; the other cameras go on', values)
        else:
            summary = Summary(summary.level, summary.message, values)
        result[name] = summary
    total = summarize(previous.total if previous is not None else None, current.total,
                      reloading=reloading)
    sizes = ', '.join(f'{size}: {count}' for size, count in current.batch_sizes.items())
    values = total.values + (
        (P99_KEY, f'{MS_PER_S * current.total_latency_p99_s:.1f}'),
        (CAMERAS_KEY, ', '.join(current.cameras)),
        (MAX_BATCH_KEY, str(current.max_batch)),
        (BATCH_SIZES_KEY, sizes or 'none yet'),
        (STALE_KEY, ', '.join(stale)))
    warned = [name for name, summary in result.items() if summary.level != Level.OK]
    if total.level == Level.OK and warned:
        total = Summary(Level.WARN, f'cameras needing attention: {", ".join(warned)} '
                                    f'({", ".join(result[name].message for name in warned)})',
                        values)
    else:
        total = Summary(total.level, total.message, values)
    result[TOTAL] = total
    return result
