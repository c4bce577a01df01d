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
With a depth topic (and its CameraInfo, by default the sibling ``camera_info``), each frame
also gets ``segmentation/points``, paired by stamp with the depth image nearest it within
the slop. Several camera topics are segmented in one pass, their frames batched together,
each camera's outputs under its own namespace. The input's topics are copied beside them
unless ``only_outputs``. Closing always
writes the index and metadata, so an interrupted, failed or stopped run leaves a valid bag
of what was done. The run stops before the output's disk is full (``min_free_bytes``), as a
bag cannot be closed on a full disk.

What each frame writes is decided by the core's
:class:`~espnet_ros.streaming.outputs.OutputWriter`, as in the node; this module is the glue:
the input, :class:`BagBackend` (rosbags messages into the output bag) and :class:`BagDepth`
(the depth input, read ahead on a reader of its own).
"""

import bisect
from dataclasses import dataclass, field
import math
from pathlib import Path
import shutil
from typing import Any, Callable, Iterator, Optional, Sequence

from rosbags.interfaces import Connection
from rosbags.rosbag2 import Reader, StoragePlugin, Writer

from espnet_ros.imaging.cloud import OrganizedCloud
from espnet_ros.imaging.codec import decode_message, DecodedImage, EncodedImage, ImageFormatError
from espnet_ros.imaging.outputs import CLASSES_TOPIC, LABEL_INFO_TOPIC, OUTPUT_TOPICS
from espnet_ros.imaging.pipeline import FrameOutputs, OutputRequest
from espnet_ros.offline import messages
from espnet_ros.offline.output_paths import check_not_input, clear_bag_output, mark_bag
from espnet_ros.offline.stream import MAX_SECONDS, OfflineError, segment_stream, Summary
from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.runtime.options import IMAGE_OUTPUTS, Output
from espnet_ros.streaming.outputs import (CloudFrame, LabelsCameraInfo, OutputSettings,
                                          OutputWriter, request_for)
from espnet_ros.streaming.pairing import Paired, PairingSettings
from espnet_ros.zoo.registry import ModelSpec

STORAGES = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}
IMAGE_TYPES = (messages.IMAGE, messages.COMPRESSED_IMAGE)
OUTPUTS = (*IMAGE_OUTPUTS, Output.POINTS)
DEFAULT_OUTPUTS = (Output.LABELS, Output.COLOR, Output.OVERLAY)  # the node's defaults
# rosbag2 metadata version 8, as Jazzy writes it; Humble and newer read it.
WRITER_VERSION = 8
NS_PER_S = 1_000_000_000
MIB = 1 << 20
# Free space the run keeps on the output's disk, so that a bag stopped for want of space can
# still be closed (index, metadata): a few full-HD frames with all their outputs.
DEFAULT_MIN_FREE_BYTES = 128 * MIB
# Free space is checked again after this many bytes of copied input messages.
SPACE_CHECK_BYTES = 4 * MIB
_TOPICS = {**OUTPUT_TOPICS, Output.CLASSES: CLASSES_TOPIC, Output.LABEL_INFO: LABEL_INFO_TOPIC}
# Message type and QoS of each output that is not an Image (the latched ones transient-local).
_MESSAGE_TYPES = {Output.CAMERA_INFO: messages.CAMERA_INFO, Output.POINTS: messages.POINT_CLOUD,
                  Output.CLASSES: messages.STRING, Output.LABEL_INFO: messages.LABEL_INFO}
_LATCHED = (Output.CLASSES, Output.LABEL_INFO)
# Depth is read from this long before the window's start, so that the first frames in the
# window find depth recorded just before them.
DEPTH_LEAD_NS = NS_PER_S


@dataclass(frozen=True)
class BagJob:
    """What to segment and where to write it (times in seconds from the bag's start)."""

    source: Path
    image_topic: str
    out: Path
    outputs: tuple[str, ...] = tuple(DEFAULT_OUTPUTS)
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
    depth_topic: Optional[str] = None
    depth_info_topic: Optional[str] = None
    settings: OutputSettings = OutputSettings()
    progress: bool = True  # a progress bar on stderr
    # More cameras segmented in the same pass, batched with image_topic's frames; each
    # camera's outputs go under its own namespace.
    more_image_topics: tuple[str, ...] = ()

    @property
    def image_topics(self) -> tuple[str, ...]:
        """Return every camera topic to segment, ``image_topic`` first."""
        return (self.image_topic, *self.more_image_topics)


@dataclass
class _BagCamera:
    """One camera of the input and where its outputs go."""

    image_topic: str
    msgtype: str
    namespace: str
    topics: dict[Output, str]  # each output's topic in the output bag
    camera_info_topic: Optional[str]
    backend: Optional['BagBackend'] = None
    output_writer: Optional[OutputWriter] = None
    camera_info: Any = None  # the last CameraInfo read before the frame in hand
    announced: bool = False


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


def check_outputs(outputs: Sequence[str], depth_topic: Optional[str] = None
                  ) -> tuple[Output, ...]:
    """
    Return ``outputs`` as Outputs if every one is known, else raise.

    ``points`` needs ``depth_topic``, and a depth topic adds ``points``.
    """
    for output in outputs:
        if output not in OUTPUTS:
            raise OfflineError(f"unknown output {output!r}; choose from {', '.join(OUTPUTS)}")
    if not outputs:
        raise OfflineError(f"no outputs asked for; choose from {', '.join(OUTPUTS)}")
    chosen = tuple(Output(output) for output in outputs)
    if Output.POINTS in chosen and depth_topic is None:
        raise OfflineError("output 'points' needs a depth input: pass --depth-topic, a "
                           'sensor_msgs/Image depth topic registered to the camera')
    if depth_topic is not None and Output.POINTS not in chosen:
        chosen += (Output.POINTS,)
    return chosen


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


def check_seconds(name: str, value: Optional[float]) -> None:
    """Raise unless ``value`` (seconds from the bag's start) is None or finite and in range."""
    if value is not None and not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
        raise OfflineError(f'{name} must be a number of seconds from 0 to {MAX_SECONDS:g}, '
                           f'got {value}')


def _stamp_ns(stamp: Any) -> int:
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


class BagBackend:
    """Writes the output writer's messages into a bag, at the current frame's receive time."""

    def __init__(self, writer: Writer, store: Any, connections: dict[Output, Connection]
                 ) -> None:
        """Write on ``connections`` (one per output taken) of ``writer``."""
        self._writer = writer
        self._store = store
        self._connections = connections
        self.timestamp = 0  # receive time (ns) of the frame being written

    def wants(self, output: Output) -> bool:
        """Return True for the outputs this bag records."""
        return output in self._connections

    def _write(self, output: Output, message: Any) -> None:
        connection = self._connections[output]
        self._writer.write(connection, self.timestamp,
                           self._store.serialize_cdr(message, connection.msgtype))

    def image(self, output: Output, header: Any, encoded: EncodedImage, height: int,
              width: int) -> None:
        """Write one image output."""
        self._write(output, messages.image_message(self._store, header, encoded, height, width))

    def camera_info(self, header: Any, info: LabelsCameraInfo) -> None:
        """Write the labels' CameraInfo."""
        self._write(Output.CAMERA_INFO, messages.camera_info_message(self._store, header, info))

    def cloud(self, stamp: Any, frame_id: str, cloud: OrganizedCloud) -> None:
        """Write a labelled cloud."""
        self._write(Output.POINTS,
                    messages.point_cloud_message(self._store, stamp, frame_id, cloud))

    def wants_class_cloud(self, name: str) -> bool:
        """Return False: the bag tool records no per-class clouds (it sets no points_groups)."""
        return False

    def class_cloud(self, name: str, stamp: Any, frame_id: str, cloud: OrganizedCloud) -> None:
        """Record nothing: :meth:`wants_class_cloud` takes none."""

    def latch(self, spec: ModelSpec, header: Optional[Any]) -> None:
        """Write the class table and LabelInfo (their connections are transient-local)."""
        self._write(Output.CLASSES, messages.classes_message(self._store, spec))
        self._write(Output.LABEL_INFO, messages.label_info_message(
            self._store, spec, header if header is not None else messages.empty_header(
                self._store)))

    def closed(self) -> bool:
        """Return False: a bag takes outputs until the run closes it."""
        return False

    def close(self) -> None:
        """Nothing to release: the run closes the bag."""


class BagDepth:
    """
    The depth input of a bag, read ahead on a reader of its own (a DepthSource).

    Asked for a colour stamp's partner, it reads depth images (and their CameraInfo) in
    receive order until one is stamped past the stamp plus the slop, so a depth image recorded
    after its colour frame is found too, as the live node finds one that arrives before the
    frame's outputs are out. Colour frames come in stamp order: depth stamped before the
    slop of the newest one is let go.
    """

    def __init__(self, path: Path, depth_topic: str, info_topic: str, start_ns: int,
                 store: Any) -> None:
        """Open ``path`` again and read ``depth_topic`` and ``info_topic`` from ``start_ns``."""
        self._reader = open_bag(path)
        self._store = store
        self._info_topic = info_topic
        connections = [c for c in self._reader.connections
                       if c.topic in (depth_topic, info_topic)]
        self._messages = self._reader.messages(connections, start_ns)
        self._stamps: list[int] = []   # the kept depth images' stamps, sorted
        self._images: list[Any] = []   # the kept depth images, in the same order
        self._newest: Optional[int] = None
        self._info: Optional[Any] = None
        self._done = False
        self.read_error = ''

    @property
    def info(self) -> Optional[Any]:
        """Return the depth CameraInfo read last (None: none yet)."""
        return self._info

    def _read_past(self, until_ns: int, floor_ns: int) -> None:
        """Read until a depth image stamped after ``until_ns``; keep those from ``floor_ns``."""
        while not self._done and (self._newest is None or self._newest <= until_ns):
            try:
                connection, _, raw = next(self._messages)
                message = self._store.deserialize_cdr(raw, connection.msgtype)
            except StopIteration:
                self._done = True
                break
            except Exception as error:  # noqa: B902 - a corrupt bag ends the depth input
                self.read_error = f'{type(error).__name__}: {error}'
                self._done = True
                break
            if connection.topic == self._info_topic:
                self._info = message
                continue
            stamp = _stamp_ns(message.header.stamp)
            self._newest = stamp if self._newest is None else max(self._newest, stamp)
            if stamp >= floor_ns:
                index = bisect.bisect_right(self._stamps, stamp)
                self._stamps.insert(index, stamp)
                self._images.insert(index, message)

    def partner(self, stamp: Any, slop_s: float) -> Optional[Any]:
        """Return the depth image nearest ``stamp`` within ``slop_s`` (earlier on a tie)."""
        target, slop = _stamp_ns(stamp), round(slop_s * NS_PER_S)
        self._read_past(target + slop, target - slop)
        first = bisect.bisect_left(self._stamps, target - slop)
        del self._stamps[:first], self._images[:first]
        best, best_gap = None, None
        for kept, image in zip(self._stamps, self._images):
            if kept > target + slop:
                break
            gap = abs(kept - target)
            if best_gap is None or gap < best_gap:
                best, best_gap = image, gap
        return best

    def add_colour(self, stamp_ns: int, frame: CloudFrame) -> list[Paired]:
        """Return the frame paired now: the bag is read ahead, so nothing is left waiting."""
        partner = self.partner(frame.header.stamp, frame.settings.depth_sync_slop_s)
        return [Paired(frame, partner, stamp_ns)]

    def apply(self, settings: PairingSettings) -> None:
        """Nothing to change: each frame carries its own slop."""

    def close(self) -> None:
        """Close the depth reader."""
        if self._reader.is_open:
            self._reader.close()


class BagSegmentation:
    """A bag being segmented: the input is checked on construction, the run writes."""

    def __init__(self, job: BagJob) -> None:
        """Open and check the input and the output path; raise OfflineError on a user error."""
        self.outputs = check_outputs(job.outputs, job.depth_topic)
        reason = job.settings.error()
        if reason:
            raise OfflineError(reason)
        if job.storage is not None and job.storage not in STORAGES:
            raise OfflineError(f'unknown storage {job.storage!r}; choose from '
                               f"{', '.join(STORAGES)}")
        check_seconds('--start', job.start)
        check_seconds('--end', job.end)
        self.job = job
        check_not_input(job.out, job.source)
        self.reader = open_bag(job.source)
        try:
            self._check_cameras()
            self._check_input()
            self.store = messages.typestore()
            self.cameras = {topic: self._camera(topic) for topic in job.image_topics}
            self._check_namespaces()
            first = self.cameras[job.image_topic]
            self.namespace, self.topics = first.namespace, first.topics
            self.camera_info_topic = first.camera_info_topic
            self.depth_info_topic = self._find_depth() if job.depth_topic else None
            clear_bag_output(job.out, job.source, force=job.force,
                             ours=[output_topic(camera.namespace, name)
                                   for camera in self.cameras.values() for name in _TOPICS],
                             input_topics=self.reader.topics)
        except BaseException:
            if self.reader.is_open:
                self.reader.close()
            raise
        self.depth: Optional[BagDepth] = None

    def _check_cameras(self) -> None:
        """Refuse options that name one camera's topics when several cameras are asked for."""
        job = self.job
        topics = job.image_topics
        repeated = sorted({topic for topic in topics if topics.count(topic) > 1})
        if repeated:
            raise OfflineError(f'--image-topic {repeated[0]} is given twice')
        if len(topics) == 1:
            return
        for option, value in (('--namespace', job.namespace),
                              ('--camera-info-topic', job.camera_info_topic),
                              ('--depth-topic', job.depth_topic)):
            if value:
                raise OfflineError(f"{option} names one camera's topic, but --image-topic is "
                                   f"given {len(topics)} times; each camera's outputs go "
                                   'under its own namespace, with its own camera_info')

    def _camera(self, topic: str) -> _BagCamera:
        """Return camera ``topic`` with its output topics and its CameraInfo topic."""
        job, msgtype = self.job, self.msgtypes[topic]
        namespace = ('/' + job.namespace.strip('/') if job.namespace
                     else camera_namespace(topic, msgtype))
        topics = {output: output_topic(namespace, output)
                  for output in (*self.outputs, *_LATCHED)}
        info_topic = self._find_camera_info(topic, msgtype)
        if info_topic:
            topics[Output.CAMERA_INFO] = output_topic(namespace, Output.CAMERA_INFO)
        return _BagCamera(topic, msgtype, namespace, topics, info_topic)

    def _check_namespaces(self) -> None:
        """Refuse two cameras whose outputs would share a namespace."""
        seen: dict[str, str] = {}
        for topic, camera in self.cameras.items():
            if camera.namespace in seen:
                raise OfflineError(f'--image-topic {seen[camera.namespace]} and {topic} are in '
                                   f'one namespace ({camera.namespace}): their outputs would '
                                   'mix; segment them in two runs')
            seen[camera.namespace] = topic

    def _find_camera_info(self, image_topic: Optional[str] = None,
                          msgtype: Optional[str] = None) -> Optional[str]:
        """Return the CameraInfo topic: the one asked for, else the camera's if recorded."""
        asked = self.job.camera_info_topic
        topic = asked or camera_namespace(image_topic or self.job.image_topic,
                                          msgtype or self.msgtype).rstrip('/') + (
            '/camera_info')
        info = self.reader.topics.get(topic)
        if info is not None and info.msgtype == messages.CAMERA_INFO:
            return topic
        if asked:
            raise OfflineError(f'camera info topic {asked} is not a {messages.CAMERA_INFO} '
                               f'topic of {self.job.source}')
        return None

    def _find_depth(self) -> str:
        """Check the depth topic; return its CameraInfo topic (asked, else the sibling)."""
        job, reader = self.job, self.reader
        info = reader.topics.get(job.depth_topic)
        if info is None or info.msgtype != messages.IMAGE:
            held = f'holds {info.msgtype}' if info is not None else 'is not in the bag'
            problem = (f'depth topic {job.depth_topic} {held}; it must be a {messages.IMAGE} '
                       f'topic of {job.source} (image topics: {_image_topics(reader)})')
            reader.close()
            raise OfflineError(problem)
        topic = job.depth_info_topic or camera_namespace(job.depth_topic, info.msgtype).rstrip(
            '/') + '/camera_info'
        info = reader.topics.get(topic)
        if info is None or info.msgtype != messages.CAMERA_INFO:
            reader.close()
            raise OfflineError(f'depth camera info topic {topic} is not a {messages.CAMERA_INFO}'
                               f' topic of {job.source}; the clouds need it (pass '
                               '--depth-camera-info-topic)')
        return topic

    def _check_image_topic(self, topic: str) -> Any:
        """Return the bag's information on camera ``topic``; raise if it is no camera."""
        job, reader = self.job, self.reader
        info = reader.topics.get(topic)
        if info is None:
            raise OfflineError(f'topic {topic} is not in {job.source}; its image '
                               f'topics: {_image_topics(reader)}')
        if info.msgtype is None:
            kinds = sorted({c.msgtype for c in reader.connections if c.topic == topic})
            raise OfflineError(f'topic {topic} holds several message types '
                               f"({', '.join(kinds)}); a camera topic has one")
        if info.msgtype not in IMAGE_TYPES:
            raise OfflineError(f'topic {topic} holds {info.msgtype}, not '
                               f'{" or ".join(IMAGE_TYPES)}; image topics: '
                               f'{_image_topics(reader)}')
        return info

    def _check_input(self) -> None:
        job, reader = self.job, self.reader
        if reader.message_count == 0:
            raise OfflineError(f'{job.source} is an empty bag (no messages)')
        infos = {topic: self._check_image_topic(topic) for topic in job.image_topics}
        self.msgtypes = {topic: info.msgtype for topic, info in infos.items()}
        self.msgtype = self.msgtypes[job.image_topic]
        self.image_connections = [c for c in reader.connections if c.topic in infos]
        start = reader.start_time + round((job.start or 0.0) * NS_PER_S)
        self.window = (start, None if job.end is None
                       else reader.start_time + round(job.end * NS_PER_S))
        if job.end is not None and job.end <= (job.start or 0.0):
            raise OfflineError(f'--end {job.end} s is not after --start {job.start or 0.0} s')
        self.frame_count = (sum(info.msgcount for info in infos.values())
                            if job.start is None and job.end is None else sum(
            1 for _ in reader.messages(self.image_connections, *self.window)))
        if self.frame_count == 0:
            raise OfflineError(f'topic {", ".join(job.image_topics)} has no messages between '
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
            mark_bag(job.out)
        except OSError as error:
            raise OfflineError(f'cannot write the output bag {job.out}: '
                               f'{error.strerror or error}') from None
        self.engine = engine
        self.copies: dict[int, Connection] = {}
        self.read_error = ''
        self.written = 0
        self.unchecked_bytes = 0
        self._add_connections()
        summary = Summary()
        try:
            if self.depth_info_topic:
                self.depth = BagDepth(job.source, job.depth_topic, self.depth_info_topic,
                                      max(self.window[0] - DEPTH_LEAD_NS, 0), self.store)
                self.output_writer.use_depth(self.depth)
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
            if type(error).__module__.split('.')[0] in ('apsw', 'sqlite3', 'mcap', 'rosbags'):
                raise OfflineError(self._closed_after(
                    f'writing {job.out} failed after {self.written} frames: {error}')) from None
            raise
        finally:
            closing_error = self._close()
        if closing_error:
            shutil.rmtree(job.out, ignore_errors=True)
            raise OfflineError(f'closing {job.out} failed ({closing_error}); the unreadable '
                               'partial bag was removed')
        if self.depth is not None and self.depth.read_error:
            self.read_error = self.read_error or f'depth: {self.depth.read_error}'
        clouds = self.output_writer.cloud_stats()
        if clouds is not None:
            summary.notes.append(
                f'{clouds.published} clouds written; {clouds.unpaired} frames without depth '
                f'within {job.settings.depth_sync_slop_s} s, {clouds.rejected} with depth '
                'that gave no cloud' + (f' (last: {clouds.last_problem})'
                                        if clouds.problems else ''))
        if self.read_error:
            raise OfflineError(f'{job.source} is corrupt or truncated after '
                               f'{summary.frames} frames ({self.read_error}); {job.out} '
                               'holds everything before')
        return summary

    def _request(self) -> OutputRequest:
        base = self.job.request
        return request_for(OutputRequest(color=True, overlay=True, confidence=True,
                                         output_resolution=base.output_resolution,
                                         alpha=base.alpha), self.output_writer.wants)

    def _add_connections(self) -> None:
        writer, job = self.writer, self.job
        ours = {topic for camera in self.cameras.values() for topic in camera.topics.values()}
        if not job.only_outputs:
            for connection in self.reader.connections:
                if connection.topic in ours:
                    continue  # an earlier run's outputs: replaced by this run's
                self.copies[connection.id] = writer.add_connection(
                    connection.topic, connection.msgtype, msgdef=connection.msgdef.data,
                    rihs01=connection.digest,
                    serialization_format=connection.ext.serialization_format,
                    offered_qos_profiles=connection.ext.offered_qos_profiles)
        for camera in self.cameras.values():
            connections = {
                output: writer.add_connection(
                    topic, _MESSAGE_TYPES.get(output, messages.IMAGE), typestore=self.store,
                    offered_qos_profiles=[messages.LATCHED_QOS if output in _LATCHED
                                          else messages.OUTPUT_QOS])
                for output, topic in camera.topics.items()}
            camera.backend = BagBackend(writer, self.store, connections)
            # Clouds not made are counted, and the summary says why; no warning per frame.
            camera.output_writer = OutputWriter(camera.backend, warn=lambda text: None,
                                                depth_info_topic=self.depth_info_topic or '')
            camera.output_writer.apply(job.settings)
        first = self.cameras[job.image_topic]
        self.backend, self.output_writer = first.backend, first.output_writer

    def _items(self) -> Iterator[_Item]:
        """Yield the input's messages in the window, in time order; stop at a read error."""
        kept = {topic for camera in self.cameras.values()
                for topic in (camera.image_topic, camera.camera_info_topic) if topic}
        wanted = () if not self.job.only_outputs else [
            c for c in self.reader.connections if c.topic in kept]
        try:
            for connection, timestamp, raw in self.reader.messages(wanted, *self.window):
                yield _Item(connection, timestamp, raw)
        except Exception as error:  # noqa: B902 - a corrupt bag ends the input, not the run
            self.read_error = f'{type(error).__name__}: {error}'

    def _decode(self, item: _Item) -> Optional[DecodedImage]:
        topic = item.connection.topic
        for camera in self.cameras.values():
            if camera.camera_info_topic and topic == camera.camera_info_topic:
                camera.camera_info = self.store.deserialize_cdr(item.raw, messages.CAMERA_INFO)
        camera = self.cameras.get(topic)
        if camera is None:
            return None
        item.camera_info = camera.camera_info
        try:
            item.message = self.store.deserialize_cdr(item.raw, item.connection.msgtype)
        except Exception as error:  # noqa: B902 - a message that does not parse is malformed
            raise ImageFormatError(f'message does not deserialize as {camera.msgtype}: '
                                   f'{type(error).__name__}') from None
        image = decode_message(item.message, max_pixels=self.job.max_pixels)
        item.camera_size = image.pixels.shape[:2]
        return image

    def _check_space(self) -> None:
        """Stop while the disk still has room to close the bag (copies count too)."""
        self.unchecked_bytes = 0
        free = shutil.disk_usage(self.job.out).free
        if free < self.job.min_free_bytes:
            raise _DiskLow(f'{free / MIB:.0f} MiB free, under the '
                           f'{self.job.min_free_bytes / MIB:.0f} MiB kept for closing the bag')

    def _emit(self, item: _Item, outputs: Optional[FrameOutputs]) -> None:
        copy = self.copies.get(item.connection.id)
        if copy is not None:
            if self.unchecked_bytes + len(item.raw) >= SPACE_CHECK_BYTES or not self.written:
                self._check_space()
            self.writer.write(copy, item.timestamp, item.raw)
            self.unchecked_bytes += len(item.raw)
        if outputs is not None:
            self._write_outputs(item, outputs)

    def _write_outputs(self, item: _Item, outputs: FrameOutputs) -> None:
        self._check_space()
        header = item.message.header
        camera = self.cameras[item.connection.topic]
        camera.backend.timestamp = item.timestamp
        if not camera.announced:
            # As the node: stamped from when the class table applies (the camera's first
            # frame's stamp, the bag's clock), in no frame.
            applies = self.store.types['std_msgs/msg/Header'](stamp=header.stamp, frame_id='')
            camera.output_writer.announce(self.engine.published_spec, applies)
            camera.announced = True
        camera.output_writer.use_camera_info(item.camera_info)
        camera.output_writer.publish(header, outputs, item.camera_size)
        self.written += 1

    def _closed_after(self, text: str) -> str:
        closing_error = self._close()
        if not closing_error:
            return text + '; what was written before is a valid bag'
        # A bag that cannot be closed is unreadable: it goes rather than pose as one.
        shutil.rmtree(self.job.out, ignore_errors=True)
        return text + f'; closing it failed too ({closing_error}), so it was removed'

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
        if self.depth is not None:
            self.depth.close()
        return problem

    def close(self) -> None:
        """Release the input without running (after a failure before :meth:`run`)."""
        self._close()
