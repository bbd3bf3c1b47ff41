"""``OdometryBag``: what vode_node publishes for each ``Estimate``, written into a bag (``vode
process --out-bag``), with the node's topics, frames and message conventions (those of
``vode_ros.ros.conversions``, built here as rosbags messages so no rclpy is needed)."""
from __future__ import annotations

from collections import deque
from contextlib import contextmanager

from vode_ros.bags.messages import Messages
from vode_ros.bags.typestore import CAMERA_INFO, DIAGNOSTICS, IMAGE, ODOMETRY, PATH, TF
from vode_ros.bags.writer import BagWriter
from vode_ros.geometry import from_xyz_rpy


class OdometryBag:
    """What vode_node publishes for each ``Estimate``, written into a bag (``vode process
    --out-bag``): ``/odom`` (odom -> base_link), ``/tf`` (the same), ``/tf_static`` (base_link ->
    camera_optical_frame, once, latched), ``/depth/image`` + ``/depth/camera_info`` (every
    ``depth_every``-th frame; 0: none), ``/path`` (like the node: every ``ros.path_period_s`` of
    stream time, stamped with its newest pose, at most ``ros.path_max_poses`` poses; and after the
    last frame), and one ``/diagnostics`` summary at the end. Frame names and the
    ``ros.publish_*`` switches come from the configuration, as in the node. Log times are the
    frames' stamps."""

    def __init__(self, path, cfg, *, storage: str | None = None, depth_every: int = 1,
                 overwrite: bool = True):
        self.cfg = cfg
        self.r = cfg.ros
        self.bag = BagWriter(path, storage, overwrite=overwrite)
        self.m = Messages(self.bag.ts)
        self.depth_every = max(0, int(depth_every))
        self.path_period_ns = int(float(cfg.ros.path_period_s) * 1e9)
        self.base_to_camera = from_xyz_rpy(cfg.camera.base_to_camera_xyz,
                                           cfg.camera.base_to_camera_rpy)
        self.poses = deque(maxlen=self.r.path_max_poses)
        self.frames = 0
        self.last_stamp = None
        self.path_written_at = -1
        self.path_stamp = None
        r = self.r
        if r.publish_camera_tf:
            self.bag.add_topic("/tf_static", TF, "latched")
        if r.publish_odom:
            self.bag.add_topic("/odom", ODOMETRY)
        if r.publish_tf:
            self.bag.add_topic("/tf", TF)
        if r.publish_depth and self.depth_every:
            self.bag.add_topic("/depth/image", IMAGE, "reliable")
            self.bag.add_topic("/depth/camera_info", CAMERA_INFO, "reliable")
        if r.publish_path:
            self.bag.add_topic("/path", PATH)
        self.bag.add_topic("/diagnostics", DIAGNOSTICS)

    def add(self, est, position: int | None = None) -> None:
        """Write one estimate; ``position``: the frame's position in the run (depth cadence)."""
        r, m, t = self.r, self.m, int(est.stamp_ns)
        position = self.frames if position is None else position
        if self.frames == 0 and r.publish_camera_tf:
            self.bag.write("/tf_static", TF, m.tf([m.transform(self.base_to_camera, t,
                                                               r.base_frame, r.camera_frame)]), t)
        if r.publish_odom:
            self.bag.write("/odom", ODOMETRY, m.odometry(est, t, r.odom_frame, r.base_frame), t)
        if r.publish_tf:
            self.bag.write("/tf", TF, m.tf([m.transform(est.pose, t, r.odom_frame,
                                                        r.base_frame)]), t)
        if r.publish_depth and self.depth_every and est.depth is not None and \
                position % self.depth_every == 0:
            self.bag.write("/depth/image", IMAGE, m.depth(est.depth, t, r.camera_frame), t)
            self.bag.write("/depth/camera_info", CAMERA_INFO,
                           m.camera_info(est.depth_camera or est.camera, t, r.camera_frame), t)
        self.poses.append(m.pose_stamped(est.pose, t, r.odom_frame))
        self.frames += 1
        self.last_stamp = t
        if r.publish_path and (self.path_stamp is None or
                               t - self.path_stamp >= self.path_period_ns):
            self._write_path()

    def _write_path(self) -> None:
        if self.last_stamp is None or self.path_written_at == self.frames:
            return
        self.bag.write("/path", PATH, self.m.path(list(self.poses), self.last_stamp,
                                                  self.r.odom_frame), self.last_stamp)
        self.path_written_at = self.frames
        self.path_stamp = self.last_stamp

    def commit(self, diagnostics: dict | None = None) -> dict:
        """Write the final path and diagnostics summary, move the bag into place; returns the
        bag's summary."""
        if self.r.publish_path:
            self._write_path()
        if self.last_stamp is not None:
            values = {"frames_processed": self.frames, **(diagnostics or {})}
            self.bag.write("/diagnostics", DIAGNOSTICS, self.m.diagnostics(
                self.last_stamp, "vode process: visual odometry", 0, "offline run", values),
                self.last_stamp)
        self.bag.commit()
        return self.bag.summary()

    def abort(self) -> None:
        self.bag.abort()

    def __enter__(self) -> "OdometryBag":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if not self.bag.done:
            self.abort()        # commit() is explicit; anything else leaves no bag
        return False


@contextmanager
def odometry_bag(path, cfg, depth_every: int = 1, **kwargs):
    """``OdometryBag`` on ``path`` as a context (None when ``path`` is None): the runner's
    ``--out-bag``. Left without ``commit()``, the bag is dropped."""
    if not path:
        yield None
        return
    with OdometryBag(path, cfg, depth_every=depth_every, **kwargs) as bag:
        yield bag
