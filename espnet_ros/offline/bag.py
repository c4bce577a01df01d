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
``espnet-ros bag``: a recorded rosbag2 bag in, a bag with the segmentation out.

Read and written with ``rosbags`` (sqlite3 and MCAP, no ROS install). The outputs go under
the camera's namespace as the node publishes them (``<ns>/segmentation/labels``, ...), each
with the camera frame's header and written at the frame's receive time in the input bag;
the class table and LabelInfo are latched at the first frame. Where the bag records the
camera's CameraInfo (``<ns>/camera_info``, or ``camera_info_topic``), each frame also gets
``segmentation/camera_info`` for the labels' grid, from the last one received before it.
The input's topics are copied beside them unless ``only_outputs``. Closing always writes the
index and metadata, so an interrupted, failed or stopped run leaves a valid bag of what was
done. The run stops before the output's disk is full (``min_free_bytes``), as a bag cannot
be closed on a full disk.

Extension point: depth and point-cloud outputs (the ``points`` output of the depth issue)
join :data:`PLANNED_OUTPUTS` -> :data:`OUTPUTS`, with their input topics read like the image
topic in :meth:`BagSegmentation._decode` and written in :meth:`BagSegmentation._write_outputs`.
"""

from dataclasses import dataclass, field
from pathlib import Path
import shutil
from typing import Any, Callable, Iterator, Optional

from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from espnet_ros.imaging.codec import decode_message, DecodedImage, ImageFormatError
from espnet_ros.imaging.outputs import (CLASSES_TOPIC, encode_outputs, LABEL_INFO_TOPIC,
                                        OUTPUT_TOPICS)
from espnet_ros.imaging.pipeline import FrameOutputs, OutputRequest
from espnet_ros.offline import messages
from espnet_ros.offline.stream import OfflineError, segment_stream, Summary
from espnet_ros.runtime.engine import SegmentationEngine

STORAGES = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}
IMAGE_TYPES = (messages.IMAGE, messages.COMPRESSED_IMAGE)
OUTPUTS = ('labels', 'color', 'overlay', 'confidence')
DEFAULT_OUTPUTS = ('labels', 'color', 'overlay')  # the node's defaults
PLANNED_OUTPUTS = {'points': 'needs the depth input of the point-cloud work, not in this build'}
# rosbag2 metadata version 8, as Jazzy writes it; Humble and newer read it.
WRITER_VERSION = 8
NS_PER_S = 1_000_000_000
MIB = 1 << 20
# Free space the run keeps on the output's disk, so that a bag stopped for want of space can
# still be closed (index, metadata): a few full-HD frames with all their outputs.
DEFAULT_MIN_FREE_BYTES = 128 * MIB
_TOPICS = {**OUTPUT_TOPICS, 'classes': CLASSES_TOPIC, 'label_info': LABEL_INFO_TOPIC}


@dataclass(frozen=True)
class BagJob:
    """What to segment and where to write it (times in seconds from the bag's start)."""

    source: Path
    image_topic: str
    out: Path
    outputs: tuple[str, ...] = DEFAULT_OUTPUTS
    request: OutputRequest = field(default_factory=OutputRequest)
    only_outputs: bool = False
    storage: Optional[str] = None
    start: Optional[float] = None
    end: Optional[float] = None
    batch: int = 1
    namespace: Optional[str] = None
    force: bool = False
    max_pixels: Optional[int] = None
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    camera_info_topic: Optional[str] = None
    progress: bool = True  # a progress bar on stderr


class _DiskLow(Exception):
    """The output's disk has less free space than the run keeps for closing the bag."""


@dataclass
class _Item:
    """One input message; ``message`` is filled in for camera frames."""

    connection: Connection
    timestamp: int
    raw: bytes
    message: Any = None
    camera_info: Any = None
    camera_size: tuple[int, int] = (0, 0)


def camera_namespace(topic: str, msgtype: str) -> str:
    """Return the namespace of a camera topic: '/cam/image_raw' and its /compressed -> '/cam'."""
    parts = [part for part in topic.split('/') if part]
    if msgtype == messages.COMPRESSED_IMAGE and len(parts) > 1 and parts[-1] == 'compressed':
        parts.pop()
    return '/' + '/'.join(parts[:-1])


def output_topic(namespace: str, output: str) -> str:
    """Return the absolute topic of ``output`` under ``namespace``."""
    return f"{namespace.rstrip('/')}/{_TOPICS[output]}"


def check_outputs(outputs: tuple[str, ...]) -> tuple[str, ...]:
    """Return ``outputs`` if every one is known and labels are among them, else raise."""
    for output in outputs:
        if output in PLANNED_OUTPUTS:
            raise OfflineError(f'output {output!r} {PLANNED_OUTPUTS[output]}')
        if output not in OUTPUTS:
            raise OfflineError(f"unknown output {output!r}; choose from {', '.join(OUTPUTS)}")
    if not outputs:
        raise OfflineError(f"no outputs asked for; choose from {', '.join(OUTPUTS)}")
    return outputs


def open_bag(path: Path) -> Reader:
    """Open a rosbag2 bag (folder, .db3 or .mcap) or raise naming what is wrong with it."""
    if not path.exists():
        raise OfflineError(f'{path} does not exist')
    try:
        reader = Reader(path)
        reader.open()
    except FileNotFoundError:
        raise OfflineError(f'{path} is not a rosbag2 bag: the folder has no metadata.yaml'
                           ) from None
    except Exception as error:  # noqa: B902 - rosbags, apsw and mcap each raise their own
        raise OfflineError(f'{path} cannot be read as a rosbag2 bag (sqlite3 or MCAP): '
                           f'{type(error).__name__}: {error}') from None
    return reader


def storage_of(path: Path) -> str:
    """Return the storage ('sqlite3' or 'mcap') of a bag folder or file."""
    if path.is_dir():
        return 'mcap' if any(path.glob('*.mcap*')) else 'sqlite3'
    return 'mcap' if path.suffix == '.mcap' else 'sqlite3'


def _image_topics(reader: Reader) -> str:
    names = sorted(topic for topic, info in reader.topics.items() if info.msgtype in IMAGE_TYPES)
    return ', '.join(names) if names else 'none'


def _clear_output(out: Path, source: Path, force: bool) -> None:
    """Make way for the output bag, or raise if something is in the way."""
    if out.resolve() == source.resolve():
        raise OfflineError(f'the output {out} is the input bag')
    if not out.exists():
        return
    if not force:
        raise OfflineError(f'{out} exists; pass --force to replace it')
    if out.is_dir() and ((out / 'metadata.yaml').exists() or not any(out.iterdir())):
        shutil.rmtree(out)
    else:
        raise OfflineError(f'{out} exists and is not a rosbag2 bag; not replacing it even with '
                           '--force')


class BagSegmentation:
    """A bag being segmented: the input is checked on construction, the run writes."""

    def __init__(self, job: BagJob) -> None:
        """Open and check the input and the output path; raise OfflineError on a user error."""
        check_outputs(job.outputs)
        if job.storage is not None and job.storage not in STORAGES:
            raise OfflineError(f'unknown storage {job.storage!r}; choose from '
                               f"{', '.join(STORAGES)}")
        self.job = job
        self.reader = open_bag(job.source)
        try:
            self._check_input()
            _clear_output(job.out, job.source, job.force)
        except BaseException:
            self.reader.close()
            raise
        self.store = messages.typestore()
        self.namespace = ('/' + job.namespace.strip('/') if job.namespace
                          else camera_namespace(job.image_topic, self.msgtype))
        self.topics = {output: output_topic(self.namespace, output)
                       for output in (*job.outputs, 'classes', 'label_info')}
        self.camera_info_topic = self._find_camera_info()
        if self.camera_info_topic:
            self.topics['camera_info'] = output_topic(self.namespace, 'camera_info')
        self.camera_info: Any = None

    def _find_camera_info(self) -> Optional[str]:
        """Return the CameraInfo topic: the one asked for, else the camera's if recorded."""
        asked = self.job.camera_info_topic
        topic = asked or camera_namespace(self.job.image_topic, self.msgtype).rstrip('/') + (
            '/camera_info')
        info = self.reader.topics.get(topic)
        if info is not None and info.msgtype == messages.CAMERA_INFO:
            return topic
        if asked:
            self.reader.close()
            raise OfflineError(f'camera info topic {asked} is not a {messages.CAMERA_INFO} '
                               f'topic of {self.job.source}')
        return None

    def _check_input(self) -> None:
        job, reader = self.job, self.reader
        if reader.message_count == 0:
            raise OfflineError(f'{job.source} is an empty bag (no messages)')
        info = reader.topics.get(job.image_topic)
        if info is None:
            raise OfflineError(f'topic {job.image_topic} is not in {job.source}; its image '
                               f'topics: {_image_topics(reader)}')
        if info.msgtype not in IMAGE_TYPES:
            raise OfflineError(f'topic {job.image_topic} holds {info.msgtype}, not '
                               f'{" or ".join(IMAGE_TYPES)}; image topics: '
                               f'{_image_topics(reader)}')
        self.msgtype = info.msgtype
        self.image_connections = [c for c in reader.connections if c.topic == job.image_topic]
        start = reader.start_time + round((job.start or 0.0) * NS_PER_S)
        self.window = (start, None if job.end is None
                       else reader.start_time + round(job.end * NS_PER_S))
        if job.end is not None and job.end <= (job.start or 0.0):
            raise OfflineError(f'--end {job.end} s is not after --start {job.start or 0.0} s')
        self.frame_count = (info.msgcount if job.start is None and job.end is None else sum(
            1 for _ in reader.messages(self.image_connections, *self.window)))
        if self.frame_count == 0:
            raise OfflineError(f'topic {job.image_topic} has no messages between '
                               f'{job.start or 0.0} s and {job.end} s of {job.source}')

    # The run -------------------------------------------------------------------------------

    def run(self, engine: SegmentationEngine,
            should_stop: Callable[[], bool] = lambda: False) -> Summary:
        """Segment the frames into the output bag; it is closed valid whatever happens."""
        job = self.job
        storage = job.storage or storage_of(job.source)
        try:
            job.out.parent.mkdir(parents=True, exist_ok=True)
            self.writer = Writer(job.out, version=WRITER_VERSION,
                                 storage_plugin=STORAGES[storage])
            self.writer.open()
        except OSError as error:
            raise OfflineError(f'cannot write the output bag {job.out}: '
                               f'{error.strerror or error}') from None
        self.engine = engine
        self.copies: dict[int, Connection] = {}
        self.read_error = ''
        self.written = 0
        self._add_connections()
        summary = Summary()
        try:
            summary = segment_stream(
                self._items(), engine=engine, request=self._request(), decode=self._decode,
                emit=self._emit, batch=job.batch, total=self.frame_count,
                desc=f'bag ({engine.spec.name})', should_stop=should_stop,
                progress=job.progress)
        except _DiskLow as low:
            raise OfflineError(self._closed_after(
                f'not enough disk space for {job.out} ({low}); stopped after {self.written} '
                'frames')) from None
        except OSError as error:
            raise OfflineError(self._closed_after(
                f'writing {job.out} failed after {self.written} frames: '
                f'{error.strerror or error}')) from None
        except Exception as error:  # noqa: B902 - apsw's disk-full error is no OSError
            if type(error).__module__.split('.')[0] in ('apsw', 'rosbags'):
                raise OfflineError(self._closed_after(
                    f'writing {job.out} failed after {self.written} frames: {error}')) from None
            raise
        finally:
            closing_error = self._close()
        if closing_error:
            raise OfflineError(f'closing {job.out} failed: {closing_error}')
        if self.read_error:
            raise OfflineError(f'{job.source} is corrupt or truncated after '
                               f'{summary.frames} frames ({self.read_error}); {job.out} '
                               'holds everything before')
        return summary

    def _request(self) -> OutputRequest:
        wanted = self.job.outputs
        base = self.job.request
        return OutputRequest(color='color' in wanted, overlay='overlay' in wanted,
                             confidence='confidence' in wanted,
                             output_resolution=base.output_resolution, alpha=base.alpha)

    def _add_connections(self) -> None:
        writer, job = self.writer, self.job
        ours = set(self.topics.values())
        if not job.only_outputs:
            for connection in self.reader.connections:
                if connection.topic in ours:
                    continue  # an earlier run's outputs: replaced by this run's
                self.copies[connection.id] = writer.add_connection(
                    connection.topic, connection.msgtype, msgdef=connection.msgdef.data,
                    rihs01=connection.digest,
                    serialization_format=connection.ext.serialization_format,
                    offered_qos_profiles=connection.ext.offered_qos_profiles)
        self.outputs = {
            output: writer.add_connection(self.topics[output], messages.IMAGE,
                                          typestore=self.store,
                                          offered_qos_profiles=[messages.OUTPUT_QOS])
            for output in job.outputs}
        if self.camera_info_topic:
            self.outputs['camera_info'] = writer.add_connection(
                self.topics['camera_info'], messages.CAMERA_INFO, typestore=self.store,
                offered_qos_profiles=[messages.OUTPUT_QOS])
        self.latched = {
            'classes': writer.add_connection(self.topics['classes'], messages.STRING,
                                             typestore=self.store,
                                             offered_qos_profiles=[messages.LATCHED_QOS]),
            'label_info': writer.add_connection(self.topics['label_info'], messages.LABEL_INFO,
                                                typestore=self.store,
                                                offered_qos_profiles=[messages.LATCHED_QOS])}
        self.announced = False

    def _items(self) -> Iterator[_Item]:
        """Yield the input's messages in the window, in time order; stop at a read error."""
        wanted = () if not self.job.only_outputs else [
            c for c in self.reader.connections
            if c.topic in (self.job.image_topic, self.camera_info_topic)]
        try:
            for connection, timestamp, raw in self.reader.messages(wanted, *self.window):
                yield _Item(connection, timestamp, raw)
        except Exception as error:  # noqa: B902 - a corrupt bag ends the input, not the run
            self.read_error = f'{type(error).__name__}: {error}'

    def _decode(self, item: _Item) -> Optional[DecodedImage]:
        if self.camera_info_topic and item.connection.topic == self.camera_info_topic:
            self.camera_info = self.store.deserialize_cdr(item.raw, messages.CAMERA_INFO)
            return None
        if item.connection.topic != self.job.image_topic:
            return None
        item.camera_info = self.camera_info
        try:
            item.message = self.store.deserialize_cdr(item.raw, item.connection.msgtype)
        except Exception as error:  # noqa: B902 - a message that does not parse is malformed
            raise ImageFormatError(f'message does not deserialize as {self.msgtype}: '
                                   f'{type(error).__name__}') from None
        image = decode_message(item.message, max_pixels=self.job.max_pixels)
        item.camera_size = image.pixels.shape[:2]
        return image

    def _emit(self, item: _Item, outputs: Optional[FrameOutputs]) -> None:
        copy = self.copies.get(item.connection.id)
        if copy is not None:
            self.writer.write(copy, item.timestamp, item.raw)
        if outputs is not None:
            self._write_outputs(item, outputs)

    def _write_outputs(self, item: _Item, outputs: FrameOutputs) -> None:
        free = shutil.disk_usage(self.job.out).free
        if free < self.job.min_free_bytes:
            raise _DiskLow(f'{free / MIB:.0f} MiB free, under the '
                           f'{self.job.min_free_bytes / MIB:.0f} MiB kept for closing the bag')
        header = item.message.header
        if not self.announced:
            self._write(self.latched['classes'], item.timestamp,
                        messages.classes_message(self.store, self.engine.spec))
            # As the node: stamped from when the class table applies (the first frame's
            # stamp, the bag's clock), in no frame.
            applies = self.store.types['std_msgs/msg/Header'](stamp=header.stamp, frame_id='')
            self._write(self.latched['label_info'], item.timestamp,
                        messages.label_info_message(self.store, self.engine.spec, applies))
            self.announced = True
        height, width = outputs.labels.shape
        for output, encoded in encode_outputs(
                outputs, labels='labels' in self.outputs).items():
            self._write(self.outputs[output], item.timestamp,
                        messages.image_message(self.store, header, encoded, height, width))
        if item.camera_info is not None:
            self._write(self.outputs['camera_info'], item.timestamp,
                        messages.camera_info_message(self.store, item.camera_info, header,
                                                     item.camera_size, (width, height)))
        self.written += 1

    def _write(self, connection: Connection, timestamp: int, message: Any) -> None:
        self.writer.write(connection, timestamp,
                          self.store.serialize_cdr(message, connection.msgtype))

    def _closed_after(self, text: str) -> str:
        closing_error = self._close()
        return text + (f'; closing it failed too: {closing_error}' if closing_error
                       else '; what was written before is a valid bag')

    def _close(self) -> str:
        """Close the writer (index and metadata) and the reader; return a failure, or ''."""
        problem = ''
        if getattr(self, 'writer', None) is not None:
            try:
                self.writer.close()
            except Exception as error:  # noqa: B902 - reported, the reader still closes
                problem = f'{type(error).__name__}: {error}'
            self.writer = None
        if self.reader.is_open:
            self.reader.close()
        return problem

    def close(self) -> None:
        """Release the input without running (after a failure before :meth:`run`)."""
        self._close()
