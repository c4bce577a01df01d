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
The loop both offline commands share: frames in batches through the engine, in order.

Items that are not frames (a bag's other messages) pass through in their place, so what is
written stays in the order it was read. A malformed frame is counted with its reason and
skipped, as the node does; a stop request ends the run after the batch in hand.
"""

from collections import Counter
from dataclasses import dataclass, field
import time
from typing import Callable, Generic, Iterable, Optional, TypeVar

from tqdm import tqdm

from espnet_ros.imaging.codec import DecodedImage, ImageFormatError
from espnet_ros.imaging.pipeline import FrameOutputs, OutputRequest, run_batch
from espnet_ros.runtime.engine import SegmentationEngine

Item = TypeVar('Item')
# The summary lists this many distinct reasons for malformed frames, most frequent first.
REASONS_SHOWN = 5
# Seconds from a bag's start: beyond this, its nanoseconds leave int64.
MAX_SECONDS = 9e9


class OfflineError(ValueError):
    """A user error in an offline run (bad input, output in the way): one line, exit 2."""


@dataclass
class Summary:
    """What a run did: frames seen, segmented and skipped (with reasons), and how fast."""

    frames: int = 0
    segmented: int = 0
    malformed: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    stopped: str = ''
    notes: list[str] = field(default_factory=list)  # what the job adds (a bag's clouds)

    @property
    def rate(self) -> float:
        """Return segmented frames per second of the whole run (reading and writing too)."""
        return self.segmented / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        """Return the summary printed at the end of a run."""
        skipped = sum(self.malformed.values())
        lines = [f'{self.frames} frames read, {self.segmented} segmented, {skipped} malformed '
                 f'skipped; {self.seconds:.1f} s, {self.rate:.2f} frames/s']
        lines += [f'  malformed x{count}: {reason}'
                  for reason, count in self.malformed.most_common(REASONS_SHOWN)]
        if len(self.malformed) > REASONS_SHOWN:
            lines.append(f'  ... and {len(self.malformed) - REASONS_SHOWN} other reasons')
        lines += self.notes
        if self.stopped:
            lines.append(self.stopped)
        return lines


@dataclass
class _Pending(Generic[Item]):
    item: Item
    image: Optional[DecodedImage]


def segment_stream(items: Iterable[Item], *, engine: SegmentationEngine,
                   request: OutputRequest, decode: Callable[[Item], Optional[DecodedImage]],
                   emit: Callable[[Item, Optional[FrameOutputs]], None], batch: int = 1,
                   total: Optional[int] = None, desc: str = 'segment',
                   should_stop: Callable[[], bool] = lambda: False,
                   progress: bool = True) -> Summary:
    """
    Segment every frame of ``items`` and hand each item, in order, to ``emit``.

    ``decode`` returns the frame of an item, None for an item that is not a frame, or raises
    :class:`ImageFormatError` for a malformed one; ``emit`` gets each item with its outputs
    (None for items without). ``total`` (frames) gives the progress bar its ETA. The run ends
    early, after the batch in hand, when ``should_stop()`` turns true; the summary says so.
    ``progress`` False shows no bar (``--no-progress``).
    """
    if batch < 1:
        raise OfflineError(f'--batch must be at least 1, got {batch}')
    summary = Summary()
    pending: list[_Pending] = []
    started = time.monotonic()

    def flush(bar: tqdm) -> None:
        frames = [entry.image for entry in pending if entry.image is not None]
        outputs = iter(run_batch(engine, frames, request) if frames else [])
        for entry in pending:
            emit(entry.item, next(outputs) if entry.image is not None else None)
        summary.segmented += len(frames)
        bar.update(len(frames))
        pending.clear()

    with tqdm(total=total, desc=desc, unit='frame', dynamic_ncols=True,
              disable=not progress) as bar:
        try:
            for item in items:
                try:
                    image = decode(item)
                except ImageFormatError as error:
                    summary.frames += 1
                    summary.malformed[str(error)] += 1
                    bar.update(1)
                    image = None
                else:
                    summary.frames += image is not None
                pending.append(_Pending(item, image))
                if sum(entry.image is not None for entry in pending) >= batch:
                    flush(bar)
                if should_stop():
                    summary.stopped = f'stopped by request after {summary.frames} frames'
                    break
            flush(bar)
        finally:
            summary.seconds = time.monotonic() - started
    return summary
