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
The segmenter's diagnostics as a pure function of two statistics snapshots.

The node turns the summary into a diagnostic_msgs/DiagnosticStatus once a period; here it is
plain data, so what the diagnostics say can be tested without ROS.
"""

from dataclasses import dataclass
import enum
from typing import Optional

from espnet_ros.streaming.clouds import CloudStats
from espnet_ros.streaming.worker import WorkerStats

MS_PER_S = 1000.0
# The key of the median decode-to-publish time; the live tool reads it back.
PROCESSING_MEDIAN_KEY = 'processing median (ms)'
THREADS_KEY = 'CPU threads'
RUNNER_KEY = 'runner'
COMPILED_GRAPH_KEY = 'compiled graph'
# The counts of camera frames taken, processed, and replaced unprocessed by a newer one.
RECEIVED_KEY = 'frames received'
PROCESSED_KEY = 'frames processed'
DROPPED_KEY = 'frames dropped (newer frame arrived)'
NOT_CONFIGURED = 'not configured: no model loaded'
HEALTHY = 'segmenting'
RELOADING = 'reloading'


class Level(enum.IntEnum):
    """Diagnostic levels, numbered as diagnostic_msgs/DiagnosticStatus numbers them."""

    OK = 0
    WARN = 1
    ERROR = 2


@dataclass(frozen=True)
class Summary:
    """One diagnostic status: level, one-line message and key-value figures."""

    level: Level
    message: str
    values: tuple[tuple[str, str], ...] = ()


def cloud_values(clouds: CloudStats) -> tuple[tuple[str, str], ...]:
    """Return the labelled cloud's figures: clouds out, frames without one and why."""
    return (('clouds published', str(clouds.published)),
            ('frames unpaired (no depth within depth_sync_slop)', str(clouds.unpaired)),
            ('depth frames rejected', str(clouds.rejected)),
            ('depth frames with negative depths', str(clouds.negative)),
            ('last depth problem', clouds.last_problem))


def summarize(previous: Optional[WorkerStats], current: Optional[WorkerStats], *,
              previous_clouds: Optional[CloudStats] = None,
              clouds: Optional[CloudStats] = None,
              reloading: Optional[str] = None) -> Summary:
    """
    Return the status for ``current``; frames rejected since ``previous`` make it WARN.

    Without a snapshot (no model configured) the status is WARN, saying so. With ``clouds``
    (the depth input is on), frames that went without a cloud since ``previous_clouds`` make
    it WARN too. ``reloading`` describes a new engine being built (the current one serves
    meanwhile); the message then starts with ``reloading``.
    """
    if current is None:
        return Summary(Level.WARN, NOT_CONFIGURED)
    values = (
        ('model', current.model),
        ('device', current.device),
        ('precision', current.precision),
        ('backend', current.backend),
        (RUNNER_KEY, current.runner),
        (COMPILED_GRAPH_KEY, current.compiled_graph),
        ('network input', '{}x{}'.format(*current.input_size)),
        (THREADS_KEY, str(current.threads)),
        ('input rate (Hz)', f'{current.input_rate_hz:.2f}'),
        ('processed rate (Hz)', f'{current.output_rate_hz:.2f}'),
        ('latency median (ms)', f'{MS_PER_S * current.latency_median_s:.1f}'),
        ('latency p95 (ms)', f'{MS_PER_S * current.latency_p95_s:.1f}'),
        (PROCESSING_MEDIAN_KEY, f'{MS_PER_S * current.processing_median_s:.1f}'),
        (RECEIVED_KEY, str(current.received)),
        (PROCESSED_KEY, str(current.processed)),
        (DROPPED_KEY, str(current.dropped)),
        ('frames malformed', str(current.malformed)),
        ('frames with stamp going backwards', str(current.stamp_backwards)),
        ('frames failed', str(current.failed)),
        ('frames with implausible stamps (not in latency)', str(current.implausible_stamps)),
        ('last problem', current.last_problem),
    )
    recent = current.problems - (previous.problems if previous is not None else 0)
    if clouds is not None:
        values += cloud_values(clouds)
    prefix = f'{RELOADING} ({reloading}); ' if reloading else ''
    if recent > 0:
        return Summary(Level.WARN, f'{prefix}{recent} frames rejected since the last report; '
                                   f'last: {current.last_problem}', values)
    cloudless = clouds.problems - (previous_clouds.problems if previous_clouds else 0) if (
        clouds is not None) else 0
    if cloudless > 0:
        return Summary(Level.WARN, f'{prefix}{cloudless} frames without a cloud since the '
                                   f'last report; last: {clouds.last_problem}', values)
    return Summary(Level.OK, f'{prefix}{HEALTHY}', values)
