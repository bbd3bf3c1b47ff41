"""Metric scale for monocular odometry: the camera height over the road (``ground``, inside the
geometric tracker) and the distance travelled by wheel odometry (``wheel``, applied by the
odometry to each step); ``ScaleStatus`` says which source is in use, its confidence and its last
update."""
from __future__ import annotations

from vode_ros.scale.status import ScaleStatus

__all__ = ["ScaleStatus", "metric_scale_for", "scale_status_of"]


def metric_scale_for(config):
    """The scale measured beside the pose backend for ``config`` (``WheelScale`` for
    ``pose.scale_source: wheel_odom``), or None where the backend's own unit is kept."""
    if config.pose.scale_source != "wheel_odom":
        return None
    from vode_ros.scale.wheel import WheelScale
    s = config.scale
    return WheelScale(window=s.wheel_window_segments, segment_s=s.wheel_segment_s,
                      max_deviation=s.wheel_max_deviation)


def scale_status_of(metric_scale, backend) -> dict | None:
    """The status of the scale in use: the wheel scale's, else the backend's own (the geometric
    tracker's ground plane), else None (the backend's unit, not measured)."""
    if metric_scale is not None:
        return metric_scale.status.to_dict()
    # only the geometric backends measure a scale; the network backend has no such attribute
    status = getattr(backend, "scale_status", None)
    return status.to_dict() if status is not None else None
