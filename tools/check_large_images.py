#!/usr/bin/env python3
"""Do camera-sized images cross between two ROS 2 processes on this machine?

Starts a subscriber process and a publisher process (each its own python, same unique
ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST). The publisher sends N best-effort
sensor_msgs/Image (default 30 x 640x480 rgb8 = 921,600 bytes) at 15 Hz with SensorDataQoS once
the subscriber has matched; the subscriber counts what arrives and the latency (receive time minus
header.stamp, same clock). Run once without and once with the Fast DDS profile
config/fastdds_shm.xml (FASTDDS_DEFAULT_PROFILES_FILE, and FASTRTPS_DEFAULT_PROFILES_FILE for
Fast DDS 2.x: ROS 2 Jazzy), and print both.

    .venv/bin/python tools/check_large_images.py                 # both runs, a table
    .venv/bin/python tools/check_large_images.py --only with     # just the profile run
    .venv/bin/python tools/check_large_images.py --min-ratio 0.9 # exit 1 if the profile run gets less

Fast DDS's default shared-memory segment is 512 KiB: a 921,600-byte image does not fit, and
best-effort samples are dropped. The profile enlarges the segment.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from vode_ros.ros.fastdds import profile_variables

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "config" / "fastdds_shm.xml"


def _qos():
    from rclpy.qos import qos_profile_sensor_data
    return qos_profile_sensor_data


def role_pub(args) -> int:
    import numpy as np
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("large_image_pub")
    pub = node.create_publisher(Image, "large_image", _qos())
    deadline = time.monotonic() + args.match_timeout
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    matched = pub.get_subscription_count() > 0
    time.sleep(0.5)  # let the reader's side of discovery settle too
    msg = Image()
    msg.height, msg.width, msg.encoding, msg.step = args.height, args.width, "rgb8", args.width * 3
    pixels = np.random.default_rng(0).integers(0, 255, (args.height, args.width, 3), dtype=np.uint8)
    msg.data = pixels.tobytes()
    msg.header.frame_id = "camera_optical_frame"
    period = 1.0 / args.rate
    t0 = time.monotonic()
    for i in range(args.count):
        target = t0 + i * period
        while time.monotonic() < target:
            time.sleep(min(0.002, max(0.0, target - time.monotonic())))
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
    time.sleep(1.0)
    print(json.dumps({"role": "pub", "matched": matched, "sent": args.count,
                      "bytes": len(msg.data)}), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def role_sub(args) -> int:
    import rclpy
    from rclpy.time import Time
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("large_image_sub")
    latencies_ms: list[float] = []
    sizes: set[int] = set()

    def on_image(msg: Image) -> None:
        now = node.get_clock().now()
        latencies_ms.append((now - Time.from_msg(msg.header.stamp)).nanoseconds / 1e6)
        sizes.add(len(msg.data))

    node.create_subscription(Image, "large_image", on_image, _qos())
    print(json.dumps({"role": "sub", "ready": True}), flush=True)
    deadline = time.monotonic() + args.match_timeout + args.count / args.rate + 5.0
    last = None
    while time.monotonic() < deadline and len(latencies_ms) < args.count:
        rclpy.spin_once(node, timeout_sec=0.05)
        if latencies_ms and last is None:
            last = time.monotonic()
        # stop 2 s after the stream would have ended
        if last is not None and time.monotonic() - last > args.count / args.rate + 2.0:
            break
    lat = sorted(latencies_ms)
    print(json.dumps({
        "role": "sub", "received": len(lat), "sizes": sorted(sizes),
        "latency_ms_median": round(statistics.median(lat), 2) if lat else None,
        "latency_ms_p95": round(lat[min(len(lat) - 1, int(0.95 * len(lat)))], 2) if lat else None,
        "latency_ms_max": round(lat[-1], 2) if lat else None,
    }), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def _last_json(text: str) -> dict:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                pass
    return {}


def run_pair(args, with_profile: bool, domain_id: int) -> dict:
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1")
    env.pop("ROS_STATIC_PEERS", None)
    if with_profile:
        for name in profile_variables():      # Fast DDS 2.x (Jazzy) reads an older name
            env[name] = str(Path(args.profile).resolve())
    else:
        env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
        env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    common = [f"--count={args.count}", f"--rate={args.rate}", f"--width={args.width}",
              f"--height={args.height}", f"--match-timeout={args.match_timeout}"]
    me = [sys.executable, str(Path(__file__).resolve())]
    sub = subprocess.Popen(me + ["--role", "sub"] + common, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ready = sub.stdout.readline()  # wait until the subscriber exists
    pub = subprocess.Popen(me + ["--role", "pub"] + common, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    budget = args.match_timeout + args.count / args.rate + 30
    try:
        pub_out, _ = pub.communicate(timeout=budget)
        sub_out, _ = sub.communicate(timeout=budget)
    except subprocess.TimeoutExpired:
        pub.kill()
        sub.kill()
        pub_out, sub_out = pub.communicate()[0], sub.communicate()[0]
    result = {"profile": str(args.profile) if with_profile else None, "domain_id": domain_id}
    result.update({k: v for k, v in _last_json(pub_out).items() if k != "role"})
    result.update({k: v for k, v in _last_json(sub_out).items() if k != "role"})
    if "received" not in result:
        result["error"] = (ready + sub_out)[-2000:] + "\n--- pub ---\n" + pub_out[-2000:]
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--role", choices=["pub", "sub"], help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, default=30)
    p.add_argument("--rate", type=float, default=15.0, help="Hz")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--match-timeout", type=float, default=10.0, help="s to wait for discovery")
    p.add_argument("--profile", default=str(PROFILE), help="Fast DDS XML profile to test")
    p.add_argument("--only", choices=["with", "without"], help="run only one of the two cases")
    p.add_argument("--domain-id", type=int, default=None,
                   help="ROS_DOMAIN_ID of the first run (default: derived from the pid)")
    p.add_argument("--min-ratio", type=float, default=None,
                   help="exit 1 if the run with the profile receives less than this fraction")
    args = p.parse_args(argv)
    if args.role == "pub":
        return role_pub(args)
    if args.role == "sub":
        return role_sub(args)

    base = args.domain_id if args.domain_id is not None else 1 + os.getpid() % 190
    cases = [False, True] if args.only is None else [args.only == "with"]
    ok = True
    for i, with_profile in enumerate(cases):
        r = run_pair(args, with_profile, base + i)
        label = "with profile   " if with_profile else "without profile"
        if "error" in r:
            print(f"{label}: no result\n{r['error']}")
            ok = ok and not with_profile
            continue
        print(f"{label}: received {r['received']}/{r.get('sent', args.count)} "
              f"({r.get('bytes', '?')} B each, matched={r.get('matched')}), latency ms "
              f"median {r['latency_ms_median']} p95 {r['latency_ms_p95']} max {r['latency_ms_max']}"
              f"  [ROS_DOMAIN_ID={r['domain_id']}]", flush=True)
        if with_profile and args.min_ratio is not None:
            ok = ok and r["received"] >= args.min_ratio * args.count
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
