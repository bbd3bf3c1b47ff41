"""The camera side of test_cross_release.py, run by the other ROS 2 release's python: publishes
frames of the test sequence to vode_node (on this host, same ROS_DOMAIN_ID) and writes what came
back to a JSON file.

    <other venv>/bin/python test/cross_release_camera.py DOMAIN_ID N_FRAMES OUT.json
"""
from __future__ import annotations

import importlib.metadata
import json
import sys
import tempfile
import time
from pathlib import Path

from ros_harness import Peer, real_or_synthetic_frames
from vode_ros.ros import conversions as conv


def release() -> str:
    for name in ("kilted", "jazzy", "humble", "rolling"):
        try:
            importlib.metadata.version(f"ros-{name}-rclpy")
            return name
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def settled(peer, n: int) -> bool:
    """The node's diagnostics account for every frame sent, and each processed one came back."""
    last = peer.last_diagnostics()
    if last is None:
        return False
    d = {k: int(v) for k, v in last[1].items() if k.startswith("frames_")}
    return d["frames_received"] >= n and d["frames_received"] == d["frames_processed"] + \
        d["frames_dropped"] + d["frames_skipped"] and \
        len(peer.messages("odom")) >= d["frames_processed"]


def main() -> int:
    domain, n, out = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    frames, source = real_or_synthetic_frames(n, Path(tempfile.mkdtemp()))
    peer = Peer(domain)
    result = {"release": release(), "source": source, "matched": False, "sent": [], "odom": []}
    try:
        result["matched"] = peer.wait_matched(60)
        stamp = 1_700_000_000 * 10**9
        for rgb, cam in frames:
            stamp += 100_000_000
            peer.send(rgb, cam, stamp)
            result["sent"].append(stamp)
            time.sleep(0.15)
        peer.wait_for(lambda: settled(peer, n), 30)
        for m in peer.messages("odom"):
            p = m.pose.pose.position
            result["odom"].append([conv.stamp_to_ns(m.header.stamp), p.x, p.y, p.z])
        result["tf_static"] = len(peer.messages("/tf_static"))
        last = peer.last_diagnostics()
        result["diagnostics"] = last[1] if last else {}
    finally:
        peer.close()
        out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
