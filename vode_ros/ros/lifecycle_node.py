"""vode_lifecycle_node: vode_node as a managed (lifecycle) node, for stacks brought up by a
lifecycle manager (nav2's lifecycle_manager, ``ros2 lifecycle set``, lifecycle_msgs services).

The same node (``VodeNode``'s steps, the same parameters, topics and services), in the states of
the ROS 2 node lifecycle:

- unconfigured: only the lifecycle services; parameters given on the command line or in a
  parameter file wait to be declared;
- configure: declare the parameters, load and check the models (a missing or contract-breaking
  model fails the transition, with the reason in the log), start the loop-closure back-end,
  create the publishers (lifecycle publishers: they publish only while active) and the services
  (``~/reset``, ``~/set_pose``, and with loop closure ``~/save_map`` / ``~/load_map``);
- activate: subscribe to the camera, publish the static TF, start the timers and the frame
  worker;
- deactivate: unsubscribe and stop the worker and the timers; the odometry (pose, reference
  frame, tracker map), the path and the loop-closure map are kept, so a later activate continues
  where it stopped;
- cleanup: drop the odometry, the back-end, the publishers and the services (back to
  unconfigured; parameters stay declared and may be changed before the next configure);
- shutdown: from any state, what deactivate and cleanup do.

Parameter changes are refused once configured, as vode_node refuses them after start.
"""
from __future__ import annotations

import time

from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecyclePublisher, State, TransitionCallbackReturn

from vode_ros.config import NODE_NAME
from vode_ros.ros.node import VodeNode
from vode_ros.ros.node import main as run_node


class VodeLifecycleNode(VodeNode, LifecycleNode):
    """``VodeNode`` whose bring-up steps run from lifecycle transitions."""

    _creating_outputs = False      # (read by create_publisher from inside Node's constructor)

    def __init__(self, **kwargs):
        # LifecycleNode's (and Node's) constructor only: the steps wait for the transitions
        LifecycleNode.__init__(self, NODE_NAME, **kwargs)
        self.log = self.get_logger()
        self.configured = False
        self.active = False
        self._vode_services: list = []
        self.log.info("vode_lifecycle_node unconfigured: waiting for configure")

    # -- what the steps create -------------------------------------------------------------------
    def create_publisher(self, *args, **kwargs):
        """The outputs are lifecycle publishers (enabled on activate); others (rosout,
        parameter events) stay plain."""
        if self._creating_outputs:
            return self.create_lifecycle_publisher(*args, **kwargs)
        return super().create_publisher(*args, **kwargs)

    def create_outputs(self):
        self._creating_outputs = True
        try:
            super().create_outputs()
        finally:
            self._creating_outputs = False

    def _refuse_changes(self, params):
        if not self.configured:
            return SetParametersResult(successful=True)
        return super()._refuse_changes(params)

    # -- transitions -----------------------------------------------------------------------------
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        t = time.monotonic()
        before = set(self.services)
        try:
            self.configure_vode()
        except Exception as exc:  # noqa: BLE001 - a bad parameter must fail the transition only
            self.log.error(f"configure failed: {type(exc).__name__}: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._vode_services = [s for s in self.services if s not in before]
        if self.vo is None:
            self.log.error(f"configure failed: models not loaded: {self.model_error}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self.create_outputs()
        self.configured = True
        self.log.info(f"configured in {time.monotonic() - t:.2f} s: models on {self.provider}, "
                      f"scale {self.scale}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        result = super().on_activate(state)           # enables the lifecycle publishers
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        self.create_inputs()
        self.start_processing()
        self.active = True
        self.log.info(f"active: image topic {self.sub_image.topic_name}")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        steps = self._stop_inputs()
        self.log.info(f"inactive ({steps}); odometry, path and map kept")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        self.log.info("unconfigured: models, back-end, publishers and services released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        steps = self._stop_inputs()
        self._release()
        self.log.info(f"shut down ({steps})")
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    # -- undoing the steps -----------------------------------------------------------------------
    def _stop_inputs(self) -> str:
        if not self.active:
            return "not active"
        self.active = False
        for sub in (self.sub_image, self.sub_info, self.sub_initialpose, self.sub_wheel):
            if sub is not None:
                self.destroy_subscription(sub)
        return self.stop_processing()

    def _release(self) -> None:
        lc = getattr(self, "lc", None)
        if lc is not None:
            lc.stop(timeout=5.0)
            self.lc = None
        for pub in [p for p in self.publishers if isinstance(p, LifecyclePublisher)]:
            self.destroy_lifecycle_publisher(pub)
        for srv in self._vode_services:
            self.destroy_service(srv)
        self._vode_services = []
        self.vo = None
        self.configured = False

    def shutdown(self) -> str:
        """On process exit, from whatever state the node is in."""
        steps = self._stop_inputs()
        self._release()
        return steps


def main(args=None):
    run_node(args, VodeLifecycleNode)


if __name__ == "__main__":
    main()
