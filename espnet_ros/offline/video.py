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
``espnet-ros video``: a video file in, an overlay video at the same frame rate out.

Anything OpenCV's VideoCapture reads goes in; the overlay is written with OpenCV's
VideoWriter (``mp4v`` for .mp4 and .mov, ``MJPG`` for .avi), at the input's size and rate,
optionally with each frame's class ids as ``<labels_dir>/frame_NNNNNN.png``.
"""

from dataclasses import dataclass, field
from pathlib import Path
import shutil
from typing import Callable, Iterator, Optional

import cv2
import numpy as np

from espnet_ros.imaging.codec import DecodedImage
from espnet_ros.imaging.pipeline import FrameOutputs, OutputRequest
from espnet_ros.offline.output_paths import clear_video_outputs
from espnet_ros.offline.stream import OfflineError, segment_stream, Summary
from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.runtime.options import OutputResolution

FOURCC = {'.mp4': 'mp4v', '.m4v': 'mp4v', '.mov': 'mp4v', '.avi': 'MJPG', '.mkv': 'MJPG'}
LABEL_NAME = 'frame_{:06d}.png'
MIB = 1 << 20
# Free space kept on the output's disk: OpenCV's writer fails silently on a full one.
DEFAULT_MIN_FREE_BYTES = 64 * MIB


@dataclass(frozen=True)
class VideoJob:
    """What to segment and where to write it."""

    source: Path
    out: Path
    labels_dir: Optional[Path] = None
    request: OutputRequest = field(default_factory=OutputRequest)
    batch: int = 1
    force: bool = False
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    progress: bool = True  # a progress bar on stderr


class _DiskLow(Exception):
    """The output's disk has less free space than the run keeps for finishing the video."""


class VideoSegmentation:
    """A video being segmented: the input is checked on construction, the run writes."""

    def __init__(self, job: VideoJob) -> None:
        """Open and check the input and the outputs; raise OfflineError on a user error."""
        if job.out.suffix.lower() not in FOURCC:
            raise OfflineError(f'{job.out}: the output must end in one of '
                               f"{', '.join(FOURCC)}")
        if not job.source.is_file():
            raise OfflineError(f'{job.source} does not exist or is not a file')
        clear_video_outputs(job.out, job.labels_dir, job.source, force=job.force)
        self.job = job
        self.capture = cv2.VideoCapture(str(job.source))
        if not self.capture.isOpened():
            raise OfflineError(f'{job.source} cannot be opened as a video by OpenCV')
        self.fps = self.capture.get(cv2.CAP_PROP_FPS)
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        if not self.fps or self.fps <= 0:
            self.capture.release()
            raise OfflineError(f'{job.source} states no frame rate; cannot keep its timing')
        self.writer: Optional[cv2.VideoWriter] = None
        self.index = 0

    def run(self, engine: SegmentationEngine,
            should_stop: Callable[[], bool] = lambda: False) -> Summary:
        """Segment every frame into the overlay video; it is closed whatever happens."""
        job = self.job
        if job.labels_dir is not None:
            try:
                job.labels_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise OfflineError(f'cannot create {job.labels_dir}: {error.strerror}') from None
        try:
            job.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OfflineError(f'cannot create {job.out.parent}: {error.strerror}') from None
        request = OutputRequest(overlay=True, output_resolution=OutputResolution.INPUT,
                                alpha=job.request.alpha)
        try:
            summary = segment_stream(
                self._frames(), engine=engine, request=request, decode=lambda frame: frame,
                emit=self._emit, batch=job.batch, total=self.frame_count,
                desc=f'video ({engine.spec.name})', should_stop=should_stop,
                progress=job.progress)
        except (_DiskLow, OSError) as error:
            self.close()
            # A video cut short on a full disk has no index: it goes rather than pose as one,
            # and so do the label files written beside it.
            job.out.unlink(missing_ok=True)
            labels = self._remove_labels()
            reason = (error.strerror if isinstance(error, OSError) else None) or str(error)
            raise OfflineError(f'not enough disk space for {job.out} ({reason}); stopped after '
                               f'{self.index} frames and removed the partial video'
                               f'{labels}') from None
        finally:
            self.close()
        if summary.frames == 0:
            raise OfflineError(f'{job.source} has no frames OpenCV can read')
        return summary

    def _frames(self) -> Iterator[DecodedImage]:
        while True:
            ok, bgr = self.capture.read()
            if not ok:
                return
            yield DecodedImage(bgr, 'bgr')

    def _remove_labels(self) -> str:
        """Remove this run's label files (and their folder if left empty); say so."""
        folder = self.job.labels_dir
        if folder is None or not folder.is_dir():
            return ''
        for index in range(self.index + 1):
            (folder / LABEL_NAME.format(index)).unlink(missing_ok=True)
        try:
            folder.rmdir()
        except OSError:
            pass  # something else is in it: it stays
        return f' and its label files in {folder}'

    def _emit(self, frame: DecodedImage, outputs: Optional[FrameOutputs]) -> None:
        folders = [self.job.out.parent]
        if self.job.labels_dir is not None:
            folders.append(self.job.labels_dir)  # maybe another disk
        for folder in folders:
            free = shutil.disk_usage(folder).free
            if free < self.job.min_free_bytes:
                raise _DiskLow(f'{free / MIB:.0f} MiB free in {folder}, under the '
                               f'{self.job.min_free_bytes / MIB:.0f} MiB kept for finishing')
        if self.writer is None:
            height, width = frame.pixels.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*FOURCC[self.job.out.suffix.lower()])
            self.writer = cv2.VideoWriter(str(self.job.out), fourcc, self.fps, (width, height))
            if not self.writer.isOpened():
                raise OfflineError(f'cannot write {self.job.out} (OpenCV found no writer for '
                                   'it, or the folder is not writable)')
        self.writer.write(np.ascontiguousarray(outputs.overlay[..., ::-1]))
        if self.job.labels_dir is not None:
            path = self.job.labels_dir / LABEL_NAME.format(self.index)
            try:
                written = cv2.imwrite(str(path), outputs.labels)
            except cv2.error as error:
                raise OSError(f'cannot write {path}: {error}') from None
            if not written:
                raise OSError(f'cannot write {path}')
        self.index += 1

    def close(self) -> None:
        """Finish the output video and release the input."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        self.capture.release()
