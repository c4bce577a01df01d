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
The ``segmenter`` lifecycle node: camera images in; labels, colour, overlay and clouds out.

configure loads the model and creates the publishers, activate subscribes to the camera
and starts the inference thread, deactivate stops both and frees the GPU, cleanup drops
the model, shutdown ends the process. With ``autostart`` (the default) the node brings
itself to active.

No remote request ends the process: an exception out of a callback is logged (throttled)
and the node goes on. The control plane (lifecycle services, diagnostics) has callback
groups of its own, so a reload that takes minutes (a compile_mode jit build) never freezes it.
"""

import os
import sys
import threading
import time
from typing import Any, Callable, NoReturn, Optional

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.srv import ChangeState
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import InvalidHandle
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from espnet_ros.compat import (finish_rcl_logging, rcl_error, regroup_lifecycle_services,
                               try_shutdown_ros)
from espnet_ros.imaging.outputs import points_groups_error
from espnet_ros.imaging.pipeline import OutputRequest
from espnet_ros.ros.camera_rig import CameraRig
from espnet_ros.ros.depth_input import DepthInput
from espnet_ros.ros.messages import diagnostic_status
from espnet_ros.ros.outputs import LatchedPublishers, PublisherBackend
from espnet_ros.ros.parameter_table import (check_parameter, check_together, Effect, effects_of,
                                            graph_batch, NodeParameters, typed_value)
from espnet_ros.ros.parameters import declare_all, EngineSettings, ParameterStartupError
from espnet_ros.ros.qos import (camera_qos, changed_reliability, describe_qos,
                                incompatible_qos_callbacks, offered_qos, resolve_reliability)
from espnet_ros.ros.shutdown import ignore_further_signals
from espnet_ros.ros.topics import camera_info_topic, camera_topic
from espnet_ros.runtime.process import (Abandoned, flush_denormals_in_inference_threads,
                                        tune_for_streaming, use_threads)
from espnet_ros.streaming.camera_diagnostics import summarize_cameras, TOTAL
from espnet_ros.streaming.cameras import MultiCameraWorker, MultiStats
from espnet_ros.streaming.clouds import CloudSettings, CloudStats
from espnet_ros.streaming.diagnostics import summarize
from espnet_ros.streaming.outputs import OutputSettings, OutputWriter
from espnet_ros.streaming.problems import ProblemLog
from espnet_ros.streaming.scheduler import BatchSettings
from espnet_ros.streaming.worker import FrameWorker, LiveSettings, WorkerStats

DIAGNOSTICS_PERIOD_S = 1.0
SHUTDOWN_WAIT_S = 0.2  # at shutdown, how long a frame in flight may delay the exit
# Wait sets rebuilt after an entity was destroyed under them, before the error is believed.
MAX_WAIT_SET_RACES = 100
# How often reliability auto looks again at the camera's publishers.
QOS_RECHECK_PERIOD_S = 1.0
SPIN_SLICE_S = 0.1  # how often the main loop checks whether the node was shut down
# After the lifecycle shutdown transition, how long the executor may take to send its answer.
FINAL_ANSWER_GRACE_S = 0.2


class SegmenterNode(LifecycleNode):
    """Semantic segmentation of a camera stream with an ESPNet-family network."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('segmenter', **kwargs)
        self._serve_lifecycle_apart()
        self.parameters = declare_all(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.worker: Optional[FrameWorker] = None
        self.sink: Optional[OutputWriter] = None
        self.subscriptions_active: list[Any] = []
        # The reliability the camera subscription was made with (auto resolved).
        self.camera_reliability: Optional[str] = None
        self.latched = LatchedPublishers(self)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._last_stats: Optional[WorkerStats] = None
        self._last_clouds: Optional[CloudStats] = None
        # With cameras: each camera's topics, its latched outputs (kept across reconfigures)
        # and the last diagnostics snapshot.
        self.rig: Optional[CameraRig] = None
        self._camera_latched: dict[str, LatchedPublishers] = {}
        self._last_multi: Optional[MultiStats] = None
        self._last_camera_clouds: dict[str, Optional[CloudStats]] = {}
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self.create_timer(QOS_RECHECK_PERIOD_S, self._recheck_camera_qos)
        self._reload_lock = threading.Lock()
        # Worker and sink change under this lock only: a transition may run during a reload.
        self._state_lock = threading.Lock()
        self.reloading: Optional[str] = None   # what a reload in progress builds
        self.finalized = threading.Event()     # the shutdown transition ran: the process ends
        # Through a function of its own: rclpy's logger refuses one call site that logs at two
        # severities, and ProblemLog's call site already warns for the worker.
        self.callback_failures = ProblemLog(lambda text: self.get_logger().error(text))
        # Camera callbacks get their own group so that, under the multi-threaded executor of
        # main(), frames keep coming while a parameter change loads a new model. Reentrant:
        # with a mutually exclusive group the executor spun in Python on the busy group and
        # starved the inference thread of the GIL (docs/performance.md).
        self.camera_group = ReentrantCallbackGroup()
        # Ctrl-C shuts the context down before destroy_node: stop publishing at once.
        self.context.on_shutdown(self._stop_worker)

    # Lifecycle transitions -------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model and create the output publishers."""
        try:
            engine = EngineSettings.from_parameters(self.parameters).build(
                self.get_logger(), abandon=self._stopping)
        except Abandoned:
            return TransitionCallbackReturn.FAILURE  # ROS shut down: nothing to report
        except Exception as error:  # noqa: B902 - any load failure is reported, not raised
            self.get_logger().error(f'cannot configure: {error}')
            return TransitionCallbackReturn.FAILURE
        # The compiled graph of compile_mode, while serving eager.
        engine.start_background(graph_batch(self.parameters))
        self._make_outputs(engine)
        self._announce_classes()
        return TransitionCallbackReturn.SUCCESS

    def _make_outputs(self, engine: Any) -> None:
        """Create the worker and its outputs for ``engine``: one camera, or each of cameras."""
        if self.parameters.cameras:
            with self._state_lock:
                self.sink = None
                self.rig = CameraRig(self, self.parameters.cameras,
                                     latched=self._camera_latched, closed=self._stopping)
                self.rig.apply(output_settings(self.parameters))
                self.worker = MultiCameraWorker(
                    engine, self.rig.writers, clock_ns=self._now_ns,
                    warn=self.get_logger().warning, settings=live_settings(self.parameters),
                    batch=batch_settings(self.parameters))
            return
        with self._state_lock:
            self.rig = None
            self.sink = OutputWriter(
                PublisherBackend(self, self.latched, closed=self._stopping),
                warn=self.get_logger().warning,
                depth_info_topic=self.resolve_topic_name('depth/camera_info'))
            self.sink.apply(output_settings(self.parameters))
            self.worker = FrameWorker(engine, self.sink, clock_ns=self._now_ns,
                                      warn=self.get_logger().warning,
                                      settings=live_settings(self.parameters))

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the camera and start the inference thread."""
        self.worker.to_device()
        self._subscribe()
        self.worker.start()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop taking frames and give the GPU memory back."""
        self._unsubscribe()
        self.worker.stop()
        self.worker.release_device()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Drop the model and the output publishers."""
        with self._state_lock:
            self._close_outputs()
            self.worker.close_engine()
            self.worker = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything from any state; the process then ends (see :func:`serve`)."""
        self._unsubscribe()
        self._stop_worker()
        self.finalized.set()
        self.get_logger().info('lifecycle shutdown: the process ends')
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        """Stop the inference thread before the node goes."""
        self._stop_worker()
        super().destroy_node()

    def _close_outputs(self) -> None:
        """Release the per-frame publishers of the camera or cameras."""
        if self.rig is not None:
            self.rig.close()
            self.rig = None
        if self.sink is not None:
            self.sink.close()
            self.sink = None

    def _stop_worker(self) -> None:
        worker = self.worker
        if worker is not None:
            worker.stop(SHUTDOWN_WAIT_S)
            worker.close_engine()  # a graph still compiling would outlive the node's purpose

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _stopping(self) -> bool:
        """Return True once ROS is shut down (Ctrl-C, SIGTERM): nothing more to serve."""
        return not self.context.ok()

    def _serve_lifecycle_apart(self) -> None:
        """
        Move the lifecycle services to a group of their own, and refuse bad ids politely.

        rclpy creates them in the default group, with the parameter services: a reload that
        blocks a parameter request for minutes froze them too (LifecycleNode passes no group
        on). rclpy answers an unavailable transition asked by label with success=False, but
        by id its state machine raised RCLError out of the callback, which ended the node.
        """
        regroup_lifecycle_services(self, MutuallyExclusiveCallbackGroup(),
                                   self._refusing_unavailable)

    def _refusing_unavailable(self, change_state: Callable) -> Callable:
        refused = rcl_error()

        def answer(request: ChangeState.Request,
                   response: ChangeState.Response) -> ChangeState.Response:
            try:
                return change_state(request, response)
            except refused as error:
                transition = request.transition
                self.callback_failures.warning(
                    f'refused lifecycle transition id {transition.id} '
                    f'{transition.label!r}: {str(error).splitlines()[0]}')
                response.success = False
                return response
        return answer

    # Camera input ------------------------------------------------------------------------

    def _camera_topic(self) -> tuple[str, Any]:
        compressed = self.parameters.input_transport == 'compressed'
        # image/compressed follows a remapped image topic, as image_transport names it.
        return camera_topic(self, compressed), CompressedImage if compressed else Image

    def _subscribe(self) -> None:
        if self.rig is not None:
            self.subscriptions_active = self.rig.subscribe(self.worker, self.parameters,
                                                           self.camera_group)
            return
        topic, message_type = self._camera_topic()
        self.camera_reliability = resolve_reliability(self.parameters.reliability,
                                                      offered_qos(self, topic))
        qos = camera_qos(self.camera_reliability)
        events = incompatible_qos_callbacks(self, topic, qos, self.parameters.reliability)
        self.subscriptions_active = [
            self.create_subscription(message_type, topic, self.worker.offer, qos,
                                     event_callbacks=events, callback_group=self.camera_group),
            # Beside the image topic as remapped, as image_transport pairs them.
            self.create_subscription(CameraInfo, camera_info_topic(self),
                                     self._on_camera_info, qos,
                                     callback_group=self.camera_group),
        ]
        if self.parameters.publish_points:
            sink = self.sink
            self.sink.use_depth(DepthInput(self, qos, self.camera_group,
                                           settings=sink.pairing_settings(),
                                           settled=sink.write_settled,
                                           refused=sink.refuse_depth))
        self.get_logger().info(
            f'listening on {self.resolve_topic_name(topic)} ({message_type.__name__}, '
            f'{describe_qos(qos)}; reliability {self.parameters.reliability}) and '
            f'{camera_info_topic(self)}')

    def _recheck_camera_qos(self) -> None:
        """With reliability auto, resubscribe when the camera's publishers call for it."""
        if not self.subscriptions_active:
            return
        if self.rig is not None:
            self.subscriptions_active = self.rig.recheck(self.worker, self.parameters,
                                                         self.camera_group)
            return
        topic, _ = self._camera_topic()
        chosen = changed_reliability(self.parameters.reliability, self.camera_reliability,
                                     offered_qos(self, topic))
        if chosen is not None:
            self.get_logger().info(f'the publishers of {self.resolve_topic_name(topic)} changed:'
                                   f' subscribing {chosen} (reliability auto)')
            self._unsubscribe()
            self._subscribe()

    def _unsubscribe(self) -> None:
        if self.rig is not None:
            self.rig.unsubscribe()
            self.subscriptions_active = []
            return
        for subscription in self.subscriptions_active:
            self.destroy_subscription(subscription)
        self.subscriptions_active = []
        depth = self.sink.use_depth(None) if self.sink is not None else None
        if depth is not None:
            depth.destroy()

    def _on_camera_info(self, message: CameraInfo) -> None:
        self.sink.use_camera_info(message)

    # Parameters ----------------------------------------------------------------------------

    def _on_set_parameters(self, parameters: list) -> SetParametersResult:
        changes = {parameter.name: typed_value(parameter.name, parameter.value)
                   for parameter in parameters}
        for name, value in changes.items():
            reason = check_parameter(name, value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        if self.finalized.is_set():
            return SetParametersResult(successful=False,
                                       reason='the node is shut down (lifecycle finalized)')
        proposed = self.parameters.with_changes(changes)
        reason = check_together(proposed)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        effects = effects_of(changes)
        worker = self.worker
        if worker is not None and 'points_groups' in changes and Effect.RELOAD not in effects:
            # Names are checked against the classes published now (after a reload, the
            # output writer warns about a name the new classes lack).
            reason = points_groups_error(proposed.points_groups,
                                         worker.engine.published_spec.dataset.classes)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        if self.worker is not None and Effect.RELOAD in effects:
            reason = self._reload(proposed)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        cameras_changed = proposed.cameras != self.parameters.cameras
        self.parameters = proposed
        if self.worker is not None and cameras_changed:
            self._rebuild_outputs()
        elif self.worker is not None and Effect.LIVE in effects:
            if self.rig is not None:
                self.worker.apply(live_settings(proposed), batch_settings(proposed))
                self.rig.apply(output_settings(proposed))
            else:
                self.worker.apply(live_settings(proposed))
                self.sink.apply(output_settings(proposed))
        if self.subscriptions_active and Effect.RESUBSCRIBE in effects and not cameras_changed:
            self._unsubscribe()
            self._subscribe()
        return SetParametersResult(successful=True)

    def _rebuild_outputs(self) -> None:
        """
        Serve the cameras now named with the engine serving now (no reload).

        Taking frames stops, the outputs are made anew (one camera, or each of cameras), and
        if the node was active, frames are taken again on the new topics.
        """
        with self._reload_lock:
            active = bool(self.subscriptions_active)
            self._unsubscribe()
            worker = self.worker
            worker.stop()
            with self._state_lock:
                self._close_outputs()
            self._make_outputs(worker.engine)
            self._announce_classes()
            self.get_logger().info(
                f'now serving cameras: {", ".join(self.parameters.cameras) or "(one camera)"}')
            if active:
                self.worker.to_device()
                self._subscribe()
                self.worker.start()

    def _reload(self, proposed: NodeParameters) -> Optional[str]:
        """
        Build the engine for ``proposed`` beside the running one; swap only if it works.

        This runs in the parameter service's callback, which answers when the build is done;
        lifecycle services and diagnostics answer meanwhile, and the diagnostics say
        ``reloading``. A transition that dropped the worker meanwhile wins over the reload.
        """
        with self._reload_lock:
            worker = self.worker
            if worker is None:
                return 'the node was cleaned up before the reload began'
            serving = worker.describe_engine()
            settings = EngineSettings.from_parameters(proposed)
            self.reloading = f'{settings.model}, {settings.backend} on {settings.device}'
            try:
                engine = settings.build(self.get_logger(), abandon=self._stopping)
            except Abandoned:
                return 'the node is shutting down'
            except Exception as error:  # noqa: B902 - refused with the reason, old engine kept
                self.get_logger().error(f'reload refused, keeping {serving}: {error}')
                return f'cannot load with the new settings ({error}); kept the old ones'
            finally:
                self.reloading = None
            with self._state_lock:
                if self.worker is not worker:
                    engine.release()
                    return 'the node was cleaned up or shut down during the reload'
                worker.swap_engine(engine)
            engine.start_background(graph_batch(proposed))
            self._announce_classes()
            return None

    # Outputs that are not per frame ----------------------------------------------------

    def _announce_classes(self) -> None:
        # The stamp says from when the class table applies (now, on the node's clock: sim time
        # under a replay); a class table is in no frame, so frame_id stays empty (README).
        header = Header(stamp=self.get_clock().now().to_msg())
        if self.rig is not None:
            self.rig.announce(self.worker.engine.published_spec, header)
        else:
            self.sink.announce(self.worker.engine.published_spec, header)

    def _publish_diagnostics(self) -> None:
        worker, rig = self.worker, self.rig
        if isinstance(worker, MultiCameraWorker) and rig is not None:
            self._publish_camera_diagnostics(worker, rig)
            return
        sink = self.sink
        stats = worker.snapshot() if worker is not None else None
        clouds = sink.cloud_stats() if sink is not None else None
        summary = summarize(self._last_stats, stats, previous_clouds=self._last_clouds,
                            clouds=clouds, reloading=self.reloading)
        self._last_stats, self._last_clouds = stats, clouds
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [diagnostic_status(summary, self.get_fully_qualified_name())]
        self.diagnostics_pub.publish(array)

    def _publish_camera_diagnostics(self, worker: MultiCameraWorker, rig: CameraRig) -> None:
        """Publish the totals' status and each camera's (``node/camera: segmentation``)."""
        stats = worker.snapshot()
        clouds = rig.cloud_stats()
        summaries = summarize_cameras(self._last_multi, stats,
                                      previous_clouds=self._last_camera_clouds, clouds=clouds,
                                      reloading=self.reloading)
        self._last_multi, self._last_camera_clouds = stats, clouds
        name = self.get_fully_qualified_name()
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [diagnostic_status(summary, name if camera == TOTAL
                                          else f'{name}/{camera}')
                        for camera, summary in summaries.items()]
        self.diagnostics_pub.publish(array)


def live_settings(parameters: NodeParameters) -> LiveSettings:
    """Return the worker's run-time settings from the node's parameters."""
    return LiveSettings(
        max_rate=parameters.max_rate, max_pixels=parameters.max_input_pixels,
        request=OutputRequest(color=parameters.publish_color,
                              overlay=parameters.publish_overlay,
                              confidence=parameters.publish_confidence,
                              output_resolution=parameters.output_resolution,
                              alpha=parameters.overlay_alpha))


def batch_settings(parameters: NodeParameters) -> BatchSettings:
    """Return how several cameras' frames are batched, from the node's parameters."""
    return BatchSettings(max_batch=parameters.max_batch, batch_wait_s=parameters.batch_wait,
                         max_rate=parameters.max_rate)


def output_settings(parameters: NodeParameters) -> OutputSettings:
    """Return the output writer's run-time settings from the node's parameters."""
    return OutputSettings(
        confidence_encoding=parameters.confidence_encoding,
        depth_sync_slop_s=parameters.depth_sync_slop,
        depth_sync_wait_s=parameters.depth_sync_wait,
        max_depth_pixels=parameters.max_input_pixels,
        clouds=CloudSettings(min_depth=parameters.min_depth, max_depth=parameters.max_depth,
                             stride=parameters.points_stride),
        points_groups=parameters.points_groups)


def serve(node: SegmenterNode, executor: MultiThreadedExecutor) -> None:
    """
    Spin until ROS shuts down or the node's lifecycle shutdown transition ran.

    An exception out of a callback (rclpy's parameter service raises on a ParameterValue of
    an unknown type) is logged, throttled, and spinning goes on: no remote request may end
    the process. InvalidHandle is a race, not a fault: deactivation (a service callback, on a
    worker thread) destroys the camera subscription, and if the spinning thread was adding
    it to its wait set at that moment, rclpy raises; the next wait set is built without it.
    A handle that stays invalid is re-raised.
    """
    races = 0
    while node.context.ok() and not node.finalized.is_set():
        try:
            executor.spin_once(timeout_sec=SPIN_SLICE_S)
            races = 0
        except InvalidHandle:
            races += 1
            if races > MAX_WAIT_SET_RACES:
                raise
        except (KeyboardInterrupt, ExternalShutdownException):
            raise
        except Exception as error:  # noqa: B902 - one bad request must not end the node
            if not node.context.ok():
                return
            node.callback_failures.warning(
                f'a callback failed and was skipped: {type(error).__name__}: {error}')
    if node.finalized.is_set():
        # The answer to the shutdown transition goes out on an executor thread once the
        # transition returns: give it that moment before the node goes.
        time.sleep(FINAL_ANSWER_GRACE_S)


def run(args: Optional[list[str]] = None) -> int:
    """Run the node until shutdown; return 1 if it could not start, else 0."""
    tune_for_streaming()
    # Before any thread runs PyTorch: the executor's, the inference and the OpenMP threads
    # started afterwards take the flags from this one.
    flush_denormals_in_inference_threads()
    rclpy.init(args=args)
    try:
        node = SegmenterNode()
    except ParameterStartupError as error:
        rclpy.logging.get_logger('segmenter').fatal(str(error))
        try_shutdown_ros()
        return 1
    except Exception:  # noqa: B902 - narrowed below
        if rclpy.ok():
            raise
        return 0  # SIGTERM shut ROS down while the node was being built: a clean stop
    # Before the engine is built and the inference thread starts: both take the count up.
    threads = use_threads(node.parameters.threads)
    node.get_logger().info(f'{threads} CPU threads for inference')
    executor: Optional[MultiThreadedExecutor] = None
    status = 0
    try:
        # Inside the try: a signal just before it shuts ROS down, and building the executor
        # then fails as below, which is a clean stop.
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        if node.parameters.autostart:
            node.trigger_configure()
            if node.worker is None:
                status = 1 if node.context.ok() else 0  # a failure, or a signal during it
            else:
                node.trigger_activate()
        if status == 0:
            serve(node, executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # noqa: B902 - narrowed below
        # A signal can invalidate the context while the executor builds its wait set; rclpy
        # then raises RCLError instead of ExternalShutdownException.
        if node.context.ok():
            raise
    finally:
        ignore_further_signals()
        if executor is not None:
            executor.shutdown()
        node.destroy_node()
        try_shutdown_ros()
        finish_rcl_logging(node.context)
        # Remove the DDS participant now, so that peers see it go at once.
        if hasattr(node.context, 'destroy'):
            node.context.destroy()
    return status


def main(args: Optional[list[str]] = None) -> NoReturn:
    """
    Run the node, then end the process with its status.

    Everything ROS holds is released in :func:`run`. The interpreter's own teardown is
    skipped: with torch loaded it takes about a second, and a frame still in the network
    would have its thread pools destroyed under it.
    """
    try:
        status = run(args)
    except KeyboardInterrupt:  # a second Ctrl-C before run() began its clean-up
        status = 0
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == '__main__':
    main()
