"""Image sequences from datasets, folders, videos and ROS 2 bags, behind one API.

    from vode_ros.datasets import open_sequence
    seq = open_sequence("/data/rgbd_dataset_freiburg1_xyz", frames="0:300")
    for f in seq:        # SequenceFrame: index, stamp_ns, image, camera, gt_pose, gt_depth
        estimate = vo.process(f.frame())
    stamps_ns, poses = seq.ground_truth()

Every reader loads images one at a time, delivers HxWx3 uint8 RGB (undistorted where the layout
ships a distortion model; ``seq.camera`` describes the images as delivered), ground-truth poses
as 4x4 camera-to-world of the camera optical frame, and ground-truth depth as float32 metres with
NaN where invalid. Layout detection looks at file names only. See each reader module for the
layout's details.
"""
from __future__ import annotations

from pathlib import Path

from vode_ros.datasets import euroc, folder, kitti, rosbag, sevenscenes, tum, video
from vode_ros.datasets.base import DatasetError, Sequence, SequenceFrame, parse_frames

__all__ = ["open_sequence", "detect_layout", "LAYOUTS", "Sequence", "SequenceFrame",
           "DatasetError", "parse_frames", "generate_sequence"]

# layout name -> what a user has on disk (the order is the detection order)
LAYOUTS = {
    "rosbag": "a ROS 2 bag: a rosbag2 folder with metadata.yaml, or a .mcap / .db3 file "
              "(sensor_msgs/Image or CompressedImage + CameraInfo)",
    "video": "a video file (" + ", ".join(video.VIDEO_SUFFIXES[:4]) + ") with an intrinsics "
             "sidecar <video>.intrinsics.txt or camera.yaml beside it",
    "tum": "a TUM RGB-D folder with rgb.txt (+ depth.txt, groundtruth.txt); also what "
           "`vode_ros.datasets.synth` writes",
    "euroc": "an EuRoC/ASL folder holding mav0/ (or mav0/ itself) with cam0/data.csv and "
             "sensor.yaml",
    "kitti": "a KITTI odometry sequence folder sequences/NN with calib.txt and image_0 or "
             "image_2 (+ times.txt, ../../poses/NN.txt)",
    "7scenes": "a 7-Scenes sequence folder with frame-NNNNNN.color.png|jpg (+ .pose.txt, "
               ".depth.png, camera-intrinsics.txt)",
    "folder": "a folder of .png/.jpg images with intrinsics.txt ('fx fy cx cy'), camera.txt or "
              "camera.yaml (+ optional times.txt)",
}

_DETECT = (
    ("rosbag", rosbag.looks_like),
    ("video", video.looks_like),
    ("tum", tum.looks_like),
    ("euroc", euroc.looks_like),
    ("kitti", kitti.looks_like),
    ("7scenes", sevenscenes.looks_like),
    ("folder", folder.looks_like),
)


def _understood() -> str:
    return "; ".join(f"{name}: {text}" for name, text in LAYOUTS.items())


def detect_layout(path) -> str:
    """The layout name of ``path`` (from file names only; nothing is decoded)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetError(f"input {p} does not exist; expected a dataset folder, a video or a "
                           f"ROS 2 bag. Layouts understood: {_understood()}", "missing")
    for name, looks in _DETECT:
        try:
            if looks(p):
                return name
        except OSError:
            continue
    what = "file" if p.is_file() else "folder"
    raise DatasetError(f"{what} {p} is in no layout vode understands. Layouts understood: "
                       f"{_understood()}", "layout")


def open_sequence(path, frames: str | None = None, *, layout: str | None = None,
                  image_topic: str | None = None, gt_frame: str | None = None,
                  gt_topic: str | None = None, stream: str | None = None) -> Sequence:
    """Open a recording as a lazily loaded ``Sequence``.

    ``frames``: ``"A:B"`` or ``"A:B:S"`` (python slice semantics) over the recording's frames.
    ``layout``: skip detection and use this layout (a key of ``LAYOUTS``).
    ``image_topic``, ``gt_frame``, ``gt_topic``: for ROS 2 bags (see ``vode_ros.datasets.rosbag``).
    ``stream``: the camera of a multi-camera layout (KITTI ``image_0``/``image_2``, EuRoC
    ``cam0``/``cam1``).
    Raises ``DatasetError`` (a ``VodeError``) for a missing or unreadable input.
    """
    p = Path(path).expanduser()
    if p.is_file() and p.name in ("rgb.txt", "depth.txt", "groundtruth.txt"):
        p = p.parent
    if layout is None:
        layout = detect_layout(p)
    elif layout not in LAYOUTS:
        raise DatasetError(f"layout '{layout}' is unknown; expected one of {', '.join(LAYOUTS)}",
                           "layout")
    elif not p.exists():
        raise DatasetError(f"input {p} does not exist", "missing")
    bag_only = {"image_topic": image_topic, "gt_frame": gt_frame, "gt_topic": gt_topic}
    if layout != "rosbag" and any(v is not None for v in bag_only.values()):
        given = [k for k, v in bag_only.items() if v is not None]
        raise DatasetError(f"{', '.join(given)} apply to ROS 2 bags, but {p} is a '{layout}' "
                           "input", "layout")
    if stream is not None and layout not in ("kitti", "euroc"):
        raise DatasetError(f"stream='{stream}' applies to KITTI and EuRoC, but {p} is a "
                           f"'{layout}' input", "layout")
    if layout == "rosbag":
        return rosbag.RosbagSequence(p, frames, image_topic=image_topic, gt_frame=gt_frame,
                                     gt_topic=gt_topic)
    if layout == "video":
        return video.VideoSequence(p, frames)
    if layout == "tum":
        return tum.TumSequence(p, frames)
    if layout == "euroc":
        return euroc.EurocSequence(p, frames, stream=stream)
    if layout == "kitti":
        return kitti.KittiSequence(p, frames, stream=stream)
    if layout == "7scenes":
        return sevenscenes.SevenScenesSequence(p, frames)
    return folder.FolderSequence(p, frames)


def generate_sequence(*args, **kwargs):
    """See ``vode_ros.datasets.synth.generate_sequence`` (imported lazily)."""
    from vode_ros.datasets.synth import generate_sequence as gen
    return gen(*args, **kwargs)
