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
One way to write a frame's outputs, for the live node and the bag tool alike; no ROS.

:class:`OutputWriter` decides what goes out: the class table and LabelInfo latched once per
model, labels only when someone takes them, colour, overlay and confidence as rendered
(confidence computed for the cloud alone is not written), the camera's CameraInfo for the
labels' grid, and the labelled cloud of a frame whose depth partner is found (with, for each
name of ``points_groups``, the dense cloud of that class's valid points). A
:class:`MessageBackend` turns each of these into a message of its library and sends it:
rclpy publishers (``espnet_ros.ros.outputs``) or a rosbags bag (``espnet_ros.offline.bag``).

Depth comes from a :class:`DepthSource`: a colour frame whose 2D outputs are out enters it
as a :class:`CloudFrame`, and its cloud is made once its depth partner is settled, by stamp,
whichever of colour and depth arrives second (:mod:`espnet_ros.streaming.pairing`): at once
when the source settles it (the depth came first, or a bag reads ahead), else when the source
hands the pair to :meth:`OutputWriter.write_settled`.
"""

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol, Sequence, TYPE_CHECKING

from espnet_ros.imaging.camera_model import intrinsics_for_labels
from espnet_ros.imaging.cloud import OrganizedCloud, select_label
from espnet_ros.imaging.codec import CONFIDENCE_ENCODINGS, EncodedImage
from espnet_ros.imaging.outputs import class_cloud_topic, encode_outputs, points_groups_error
from espnet_ros.imaging.pipeline import FrameOutputs, OutputRequest
from espnet_ros.runtime.options import DEFAULT_DEPTH_SYNC_SLOP_S, Output
from espnet_ros.streaming.clouds import CloudMaker, CloudSettings, CloudStats, label_colours
from espnet_ros.streaming.pairing import message_stamp_ns, Paired, PairingSettings
from espnet_ros.streaming.problems import ProblemLog

if TYPE_CHECKING:
    from espnet_ros.zoo.registry import ModelSpec

# The outputs planners read, written before the pictures (see OutputWriter.publish).
DATA_OUTPUTS = (Output.LABELS, Output.CONFIDENCE)
PICTURE_OUTPUTS = (Output.COLOR, Output.OVERLAY)


@dataclass(frozen=True)
class OutputSettings:
    """The run-time settings of the outputs: confidence encoding, depth pairing, clouds."""

    confidence_encoding: str = CONFIDENCE_ENCODINGS[0]
    depth_sync_slop_s: float = DEFAULT_DEPTH_SYNC_SLOP_S
    depth_sync_wait_s: float = PairingSettings.wait_s
    max_depth_pixels: Optional[int] = None  # depth images larger than this are refused
    clouds: CloudSettings = CloudSettings()
    # Class or group names: each also gets the dense cloud of its valid points.
    points_groups: tuple[str, ...] = ()

    def pairing(self) -> PairingSettings:
        """Return how colour frames pair with depth under these settings."""
        return PairingSettings(slop_s=self.depth_sync_slop_s, wait_s=self.depth_sync_wait_s,
                               max_pixels=self.max_depth_pixels)

    def error(self) -> Optional[str]:
        """Return why these settings cannot be used, or None."""
        clouds = self.clouds
        if self.confidence_encoding not in CONFIDENCE_ENCODINGS:
            return (f'confidence encoding must be one of {", ".join(CONFIDENCE_ENCODINGS)}; '
                    f'got {self.confidence_encoding!r}')
        if not self.depth_sync_slop_s >= 0:
            return f'the depth sync slop must be 0 s or more; got {self.depth_sync_slop_s}'
        if not self.depth_sync_wait_s >= 0:
            return f'the depth sync wait must be 0 s or more; got {self.depth_sync_wait_s}'
        if not 0 <= clouds.min_depth < clouds.max_depth:
            return (f'depths must satisfy 0 <= min depth < max depth; got {clouds.min_depth} '
                    f'and {clouds.max_depth}')
        if clouds.stride < 1:
            return f'the points stride must be 1 or more; got {clouds.stride}'
        return points_groups_error(self.points_groups)


@dataclass(frozen=True)
class LabelsCameraInfo:
    """
    The fields of the camera's sensor_msgs/CameraInfo for the labels' grid.

    K and P are those of the part of the sensor the frame shows (its ROI and binning,
    REP 104), rescaled to the labels, which then need no ROI or binning of their own.
    """

    width: int
    height: int
    distortion_model: str
    d: Any
    r: Any
    k: list[float]
    p: list[float]


def labels_camera_info(source: Any, camera_size: tuple[int, int],
                       label_size: tuple[int, int]) -> LabelsCameraInfo:
    """
    Return the CameraInfo fields of ``source`` for the labels' (width, height) grid.

    ``camera_size`` is the camera frame's (height, width). Raises ValueError when the
    CameraInfo does not describe a frame of that size.
    """
    k, p = intrinsics_for_labels(source, camera_size, label_size)
    return LabelsCameraInfo(width=label_size[0], height=label_size[1],
                            distortion_model=source.distortion_model, d=source.d, r=source.r,
                            k=list(k), p=list(p))


class MessageBackend(Protocol):
    """Builds one library's messages and sends them on the outputs' topics."""

    def wants(self, output: Output) -> bool:
        """Return True if ``output`` is taken now (listened to, or asked for in a bag)."""

    def image(self, output: Output, header: Any, encoded: EncodedImage, height: int,
              width: int) -> None:
        """Send one image output stamped with the camera frame's ``header``."""

    def camera_info(self, header: Any, info: LabelsCameraInfo) -> None:
        """Send the labels' CameraInfo stamped with ``header``."""

    def cloud(self, stamp: Any, frame_id: str, cloud: OrganizedCloud) -> None:
        """Send a labelled cloud stamped ``stamp`` in the depth image's ``frame_id``."""

    def wants_class_cloud(self, name: str) -> bool:
        """Return True if the dense cloud of class or group ``name`` is taken now."""

    def class_cloud(self, name: str, stamp: Any, frame_id: str, cloud: OrganizedCloud) -> None:
        """Send the dense cloud of class or group ``name`` (see ``select_label``)."""

    def latch(self, spec: 'ModelSpec', header: Optional[Any]) -> None:
        """Send the class table and LabelInfo of ``spec`` (latched; header None: empty)."""

    def closed(self) -> bool:
        """Return True once the outputs are gone for good (the process is shutting down)."""

    def close(self) -> None:
        """Release what the backend holds (publishers)."""


@dataclass(frozen=True)
class CloudFrame:
    """A colour frame waiting for its depth partner: what its cloud is made from."""

    header: Any
    outputs: FrameOutputs
    camera_size: tuple[int, int]  # (height, width)
    label_rgb: Any  # K x 3 class colours of the model that labelled it
    settings: OutputSettings  # as they were when the frame's outputs went out
    class_names: tuple[str, ...] = ()  # the published classes of its labels, by id


class DepthSource(Protocol):
    """Depth images paired with colour frames by stamp, and the depth camera's CameraInfo."""

    @property
    def info(self) -> Optional[Any]:
        """Return the latest depth CameraInfo (None: none yet)."""

    def add_colour(self, stamp_ns: int, frame: CloudFrame) -> list[Paired]:
        """
        Take a colour frame stamped ``stamp_ns``; return the pairs settled now.

        Pairs that settle later (a live source, whose depth may arrive after the colour frame)
        go to :meth:`OutputWriter.write_settled` from the source's own thread.
        """

    def apply(self, settings: PairingSettings) -> None:
        """Pair by ``settings`` from now on."""


def request_for(wanted: OutputRequest, wants: Callable[[Output], bool]) -> OutputRequest:
    """Return the ``wanted`` outputs less those nobody takes, judged by ``wants``."""
    return OutputRequest(color=wanted.color and wants(Output.COLOR),
                         overlay=wanted.overlay and wants(Output.OVERLAY),
                         confidence=wanted.confidence and wants(Output.CONFIDENCE),
                         output_resolution=wanted.output_resolution, alpha=wanted.alpha)


class OutputWriter:
    """Writes each frame's outputs through a backend (an OutputSink of the worker)."""

    def __init__(self, backend: MessageBackend, *, warn: Callable[[str], None],
                 depth_info_topic: str) -> None:
        """
        Write through ``backend``; ``warn`` gets throttled reasons for missing clouds.

        ``depth_info_topic`` is named in the reason when no depth CameraInfo came.
        """
        self._backend = backend
        self._clouds = CloudMaker(warn, info_topic=depth_info_topic)
        self._settings = OutputSettings()
        self._label_rgb = label_colours([])
        self._class_names: tuple[str, ...] = ()
        self._class_problems = ProblemLog(warn)
        self._camera_info: Optional[Any] = None
        self._depth: Optional[DepthSource] = None

    # Settings and inputs besides the frames --------------------------------------------

    def apply(self, settings: OutputSettings) -> None:
        """Use ``settings`` from the next frame on."""
        self._settings = settings
        depth = self._depth
        if depth is not None:
            depth.apply(settings.pairing())

    def pairing_settings(self) -> PairingSettings:
        """Return how a depth source pairs frames under the current settings."""
        return self._settings.pairing()

    def announce(self, spec: 'ModelSpec', header: Optional[Any] = None) -> None:
        """Latch the class table and LabelInfo of the serving model; colour clouds by it."""
        self._label_rgb = label_colours(spec.dataset.palette)
        self._class_names = tuple(spec.dataset.classes)
        self._backend.latch(spec, header)

    def use_camera_info(self, message: Optional[Any]) -> None:
        """Take the camera's CameraInfo: frames from now on get it for the labels' grid."""
        self._camera_info = message

    def use_depth(self, source: Optional[DepthSource]) -> Optional[DepthSource]:
        """Pair frames with depth from ``source`` (None: no clouds); return the one before."""
        previous, self._depth = self._depth, source
        return previous

    # The worker's sink -----------------------------------------------------------------

    def _clouds_taken(self) -> bool:
        backend = self._backend
        # Every name is asked (no short cut): a live backend makes its publisher when asked.
        classes = [backend.wants_class_cloud(name) for name in self._settings.points_groups]
        return self._depth is not None and (backend.wants(Output.POINTS) or any(classes))

    def wants(self, output: Output) -> bool:
        """Return True if ``output`` is taken now (confidence: or the cloud takes it)."""
        if output is Output.CONFIDENCE and self._clouds_taken():
            return True
        return self._backend.wants(output)

    def publish(self, header: Any, outputs: FrameOutputs,
                camera_size: tuple[int, int]) -> None:
        """Write one frame's outputs stamped with its ``header``; ``camera_size`` is H x W."""
        # What planners read goes first (labels, confidence, the labels' CameraInfo, clouds),
        # then the pictures, which the frame's outputs render only now.
        self._write_images(header, outputs, DATA_OUTPUTS)
        camera_info = self._camera_info
        if camera_info is not None:
            height, width = outputs.labels.shape
            self._backend.camera_info(header, labels_camera_info(camera_info, camera_size,
                                                                 (width, height)))
        self._write_cloud(header, outputs, camera_size)
        self._write_images(header, outputs, PICTURE_OUTPUTS)

    def _write_images(self, header: Any, outputs: FrameOutputs,
                      kinds: Sequence[Output]) -> None:
        """Write the image outputs of ``kinds`` that the frame has and the backend takes."""
        backend = self._backend
        # Labels are always computed and confidence also for the cloud; the pictures are
        # there only when the request (already shaped by the backend) asked for them.
        wanted = [kind for kind in kinds if kind in PICTURE_OUTPUTS or backend.wants(kind)]
        height, width = outputs.labels.shape
        images = encode_outputs(outputs, wanted,
                                confidence_encoding=self._settings.confidence_encoding)
        for output, encoded in images.items():
            backend.image(output, header, encoded, height, width)

    def _write_cloud(self, header: Any, outputs: FrameOutputs,
                     camera_size: tuple[int, int]) -> None:
        """Hand the frame to the depth pairing and write the clouds it settles."""
        depth = self._depth
        if depth is None or not self._clouds_taken():
            return
        try:
            stamp_ns = message_stamp_ns(header)
        except ValueError as error:
            self._clouds.refuse(f'colour frame: {error}: no cloud')
            return
        self.write_settled(depth.add_colour(stamp_ns, CloudFrame(
            header, outputs, camera_size, self._label_rgb, self._settings,
            self._class_names)))

    def write_settled(self, pairs: list[Paired]) -> None:
        """
        Write the clouds of colour frames whose depth partner is settled (None: none in time).

        A frame without a cloud is counted and warned about (see :class:`CloudMaker`).
        """
        depth = self._depth
        info = depth.info if depth is not None else None
        for pair in pairs:
            frame: CloudFrame = pair.colour
            settings = frame.settings
            cloud = self._clouds.make(frame.header, frame.outputs, frame.camera_size,
                                      pair.depth, info, slop_s=settings.depth_sync_slop_s,
                                      wait_s=settings.depth_sync_wait_s,
                                      label_rgb=frame.label_rgb, settings=settings.clouds)
            if cloud is None or self._backend.closed():
                continue
            frame_id = pair.depth.header.frame_id
            if self._backend.wants(Output.POINTS):
                self._backend.cloud(frame.header.stamp, frame_id, cloud)
            for name in settings.points_groups:
                self._write_class_cloud(frame, name, frame_id, cloud)

    def _write_class_cloud(self, frame: CloudFrame, name: str, frame_id: str,
                           cloud: OrganizedCloud) -> None:
        """Send the dense cloud of ``name``'s valid points, if it is taken."""
        if not self._backend.wants_class_cloud(name):
            return
        if name not in frame.class_names:
            self._class_problems.warning(
                f'points_groups names {name!r}, which is not a published class '
                f'({", ".join(frame.class_names)}): no cloud on {class_cloud_topic(name)}')
            return
        self._backend.class_cloud(name, frame.header.stamp, frame_id,
                                  select_label(cloud, frame.class_names.index(name)))

    def refuse_depth(self, reason: str) -> None:
        """Count a depth image refused before pairing (its stamp, its size), with why."""
        self._clouds.refuse(reason)

    def cloud_stats(self) -> Optional[CloudStats]:
        """Return the cloud counts while a depth source is in use, else None."""
        return self._clouds.snapshot() if self._depth is not None else None

    def closed(self) -> bool:
        """Return True once the backend's outputs are gone for good."""
        return self._backend.closed()

    def close(self) -> None:
        """Release the backend's publishers."""
        self._backend.close()
