"""The loop-closure back-end's outputs as messages: the corrected keyframe path (nav_msgs/Path in
the map frame), the keyframe and loop markers (visualization_msgs/MarkerArray, for RViz) and its
diagnostics status. The node publishes the first two latched (reliable, transient-local)."""
from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from nav_msgs.msg import Path
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from vode_ros.ros import conversions as conv


def _point(xyz) -> Point:
    return Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def map_messages(lc, frame: str, cam_to_base: np.ndarray, now) -> tuple[Path, MarkerArray]:
    """(corrected keyframe path of base_link, markers) in ``frame`` at stamp ``now``."""
    stamps, poses = lc.corrected_poses()
    path = Path(header=Header(stamp=now, frame_id=frame))
    for s, P in zip(stamps, poses, strict=True):
        path.poses.append(conv.pose_stamped(P @ cam_to_base, Header(
            stamp=conv.ns_to_stamp(int(s)), frame_id=frame)))
    header = Header(stamp=now, frame_id=frame)
    keyframes = Marker(header=header, ns="keyframes", id=0, type=Marker.SPHERE_LIST,
                       action=Marker.ADD)
    keyframes.scale.x = keyframes.scale.y = keyframes.scale.z = 0.02
    keyframes.color.r, keyframes.color.g, keyframes.color.b, keyframes.color.a = \
        0.2, 0.6, 1.0, 1.0
    keyframes.pose.orientation.w = 1.0
    keyframes.points = [_point(P[:3, 3]) for P in poses]
    loops = Marker(header=header, ns="loop_closures", id=1, type=Marker.LINE_LIST)
    edges = lc.loop_edges()
    loops.action = Marker.ADD if edges else Marker.DELETE
    loops.scale.x = 0.01
    loops.color.r, loops.color.g, loops.color.b, loops.color.a = 1.0, 0.3, 0.1, 1.0
    loops.pose.orientation.w = 1.0
    for a, b in edges:
        loops.points += [_point(a), _point(b)]
    return path, MarkerArray(markers=[keyframes, loops])


def loop_closure_status(lc, node_name: str) -> DiagnosticStatus:
    s = lc.summary()
    last = lc.events[-1] if lc.events else None
    level, message = DiagnosticStatus.OK, f"{s['loops_active']} loops in the map"
    if not lc.running:
        level, message = DiagnosticStatus.ERROR, "back-end thread not running"
    elif s["errors"]:
        level, message = DiagnosticStatus.WARN, f"back-end errors: {lc.last_error}"
    elif not s["relocalised"]:
        level, message = DiagnosticStatus.WARN, "not relocalised in the loaded map yet"
    values = {k: str(v) for k, v in s.items()}
    values["last_event"] = "" if last is None else \
        f"{'accepted' if last.accepted else 'rejected'} keyframe {last.query} -> " \
        f"{last.candidate}: {last.reason}"
    return DiagnosticStatus(level=level, name=f"{node_name}: loop closure",
                            message=message, hardware_id="vode_ros",
                            values=[KeyValue(key=k, value=v) for k, v in values.items()])
