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
The ``segmenter`` lifecycle node: camera images in; labels, colour and overlay out.

configure loads the model and creates the publishers, activate subscribes to the camera
and starts the inference thread, deactivate stops both and frees the GPU, cleanup drops
the model. With ``autostart`` (the default) the node brings itself to active.
"""

import json
import os
import sys
import threading
from typing import Any, NoReturn, Optional

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.exceptions import InvalidHandle
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String

from espnet_ros.imaging.pipeline import OutputRequest
from espnet_ros.ros.messages import diagnostic_status, label_info_message
from espnet_ros.ros.outputs import PublisherSink
from espnet_ros.ros.parameter_table import check_parameter, LIVE, PARAMETERS, RELOAD, RESUBSCRIBE
from espnet_ros.ros.parameters import declare_all, EngineSettings, ParameterStartupError
from espnet_ros.ros.qos import camera_qos, describe_qos, incompatible_qos_callbacks, LATCHED_QOS
from espnet_ros.runtime.process import tune_for_streaming
from espnet_ros.streaming.diagnostics import summarize
from espnet_ros.streaming.worker import FrameWorker, LiveSettings, WorkerStats
from espnet_ros.zoo.registry import class_table

DIAGNOSTICS_PERIOD_S = 1.0
SHUTDOWN_WAIT_S = 0.2  # at shutdown, how long a frame in flight may delay the exit
# Wait sets rebuilt after an entity was destroyed under them, before the error is believed.
MAX_WAIT_SET_RACES = 100


class SegmenterNode(LifecycleNode):
    """Semantic segmentation of a camera stream with an ESPNet-family network."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('segmenter', **kwargs)
        self.values = declare_all(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.worker: Optional[FrameWorker] = None
        self.sink: Optional[PublisherSink] = None
        self.subscriptions_active: list[Any] = []
        self.classes_pub = self.create_publisher(String, 'segmentation/classes', LATCHED_QOS)
        self.label_info_pub = None
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._last_stats: Optional[WorkerStats] = None
        self.create_timer(DIAGNOSTICS_PERIOD_S, self._publish_diagnostics)
        self._reload_lock = threading.Lock()
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
            engine = EngineSettings.from_values(self.values).build(self.get_logger())
        except Exception as error:  # noqa: B902 - any load failure is reported, not raised
            self.get_logger().error(f'cannot configure: {error}')
            return TransitionCallbackReturn.FAILURE
        self.sink = PublisherSink(self, closed=lambda: not self.context.ok())
        self.worker = FrameWorker(engine, self.sink, clock_ns=self._now_ns,
                                  warn=self.get_logger().warning,
                                  settings=live_settings(self.values))
        self._announce_classes()
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the camera and start the inference thread."""
        self.worker.engine.to_device()
        self._subscribe()
        self.worker.start()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop taking frames and give the GPU memory back."""
        self._unsubscribe()
        self.worker.stop()
        self.worker.engine.release()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Drop the model and the output publishers."""
        self.sink.destroy()
        self.sink = None
        self.worker = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything from any state."""
        self._unsubscribe()
        self._stop_worker()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        """Stop the inference thread before the node goes."""
        self._stop_worker()
        super().destroy_node()

    def _stop_worker(self) -> None:
        if self.worker is not None:
            self.worker.stop(SHUTDOWN_WAIT_S)

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # Camera input ------------------------------------------------------------------------

    def _subscribe(self) -> None:
        qos = camera_qos(self.values['reliability'])
        compressed = self.values['input_transport'] == 'compressed'
        topic, message_type = ('image/compressed', CompressedImage) if compressed else (
            'image', Image)
        events = incompatible_qos_callbacks(self, topic, qos)
        self.subscriptions_active = [
            self.create_subscription(message_type, topic, self.worker.offer, qos,
                                     event_callbacks=events, callback_group=self.camera_group),
            self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info, qos,
                                     callback_group=self.camera_group),
        ]
        self.get_logger().info(
            f'listening on {self.resolve_topic_name(topic)} ({message_type.__name__}, '
            f'{describe_qos(qos)})')

    def _unsubscribe(self) -> None:
        for subscription in self.subscriptions_active:
            self.destroy_subscription(subscription)
        self.subscriptions_active = []

    def _on_camera_info(self, message: CameraInfo) -> None:
        self.sink.camera_info = message

    # Parameters ----------------------------------------------------------------------------

    def _on_set_parameters(self, parameters: list) -> SetParametersResult:
        changes = {parameter.name: parameter.value for parameter in parameters}
        for name, value in changes.items():
            reason = check_parameter(name, value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        proposed = {**self.values, **changes}
        effects = {spec.effect for spec in PARAMETERS if spec.name in changes}
        if self.worker is not None and RELOAD in effects:
            reason = self._reload(proposed)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        self.values = proposed
        if self.worker is not None and LIVE in effects:
            self.worker.apply(live_settings(proposed))
        if self.subscriptions_active and RESUBSCRIBE in effects:
            self._unsubscribe()
            self._subscribe()
        return SetParametersResult(successful=True)

    def _reload(self, proposed: dict[str, Any]) -> Optional[str]:
        """Build the engine for ``proposed`` beside the running one; swap only if it works."""
        with self._reload_lock:
            serving = self.worker.engine
            try:
                engine = EngineSettings.from_values(proposed).build(self.get_logger())
            except Exception as error:  # noqa: B902 - refused with the reason, old engine kept
                self.get_logger().error(f'reload refused, keeping {serving.spec.name} on '
                                        f'{serving.device}: {error}')
                return f'cannot load with the new settings ({error}); kept the old ones'
            self.worker.swap_engine(engine)
            self._announce_classes()
            return None

    # Outputs that are not per frame ----------------------------------------------------

    def _announce_classes(self) -> None:
        spec = self.worker.engine.spec
        self.classes_pub.publish(String(data=json.dumps(class_table(spec))))
        label_info = label_info_message(spec, self.worker.last_header or Header())
        if label_info is not None:
            if self.label_info_pub is None:
                self.label_info_pub = self.create_publisher(
                    type(label_info), 'segmentation/label_info', LATCHED_QOS)
            self.label_info_pub.publish(label_info)

    def _publish_diagnostics(self) -> None:
        stats = self.worker.snapshot() if self.worker is not None else None
        summary = summarize(self._last_stats, stats)
        self._last_stats = stats
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [diagnostic_status(summary, self.get_fully_qualified_name())]
        self.diagnostics_pub.publish(array)


def live_settings(values: dict[str, Any]) -> LiveSettings:
    """Return the worker's run-time settings from the node's parameter values."""
    return LiveSettings(
        max_rate=values['max_rate'], max_pixels=values['max_input_pixels'],
        request=OutputRequest(color=values['publish_color'], overlay=values['publish_overlay'],
                              confidence=values['publish_confidence'],
                              output_resolution=values['output_resolution'],
                              alpha=values['overlay_alpha']))


def spin_through_destruction_races(executor: MultiThreadedExecutor) -> None:
    """
    Spin until shutdown, going on when an entity died while the wait set was being built.

    Deactivation (a service callback, on a worker thread) destroys the camera subscription
    and its QoS event handlers; if the spinning thread was adding those to its wait set at
    that moment, rclpy raises InvalidHandle out of spin(). The next wait set is built
    without them, so spinning again is right; a handle that stays invalid is re-raised.
    """
    for _ in range(MAX_WAIT_SET_RACES):
        try:
            executor.spin()
            return
        except InvalidHandle:
            continue
    executor.spin()


def run(args: Optional[list[str]] = None) -> int:
    """Run the node until shutdown; return 1 if it could not start, else 0."""
    tune_for_streaming()
    rclpy.init(args=args)
    try:
        node = SegmenterNode()
    except ParameterStartupError as error:
        rclpy.logging.get_logger('segmenter').fatal(str(error))
        rclpy.try_shutdown()
        return 1
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    status = 0
    try:
        if node.values['autostart']:
            node.trigger_configure()
            if node.worker is None:
                status = 1
            else:
                node.trigger_activate()
        if status == 0:
            spin_through_destruction_races(executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # noqa: B902 - narrowed below
        # A signal can invalidate the context while the executor builds its wait set; rclpy
        # then raises RCLError instead of ExternalShutdownException.
        if node.context.ok():
            raise
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        # A signal shuts the context down in C, which leaves rcl's log file to be flushed at
        # interpreter exit, which main() skips; rclpy has no public call for this. Older
        # rclpy (Humble) may lack either call: then the interpreter's exit does the work.
        if hasattr(node.context, '_logging_fini'):
            node.context._logging_fini()
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
    status = run(args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == '__main__':
    main()
