"""``vode bag from-dataset``: any sequence ``open_sequence`` reads, as a camera bag.

Topics: ``/camera/image_raw`` (``sensor_msgs/Image`` rgb8) or, with ``compressed``,
``/camera/image_raw/compressed`` (``sensor_msgs/CompressedImage`` jpeg), ``/camera/camera_info``
and the ground truth as ``/tf`` ``world`` -> ``camera_gt`` (the frame's ``gt_pose``: camera
optical frame to world). Header stamps are the dataset's stamps and so are the bag's receive
(log) times.
"""
from __future__ import annotations

from dataclasses import asdict

import numpy as np

from vode_ros.bags.messages import Messages
from vode_ros.bags.typestore import CAMERA_INFO, COMPRESSED, IMAGE, TF
from vode_ros.bags.writer import BagWriter
from vode_ros.progress import progress_bar


def dataset_to_bag(input_path, out, frames: str | None = None, storage: str | None = None,
                   compressed: bool = False, overwrite: bool = False,
                   image_topic: str = "/camera/image_raw",
                   info_topic: str = "/camera/camera_info", frame_id: str = "camera",
                   gt_parent: str = "world", gt_child: str = "camera_gt",
                   jpeg_quality: int = 95, quiet: bool = False) -> dict:
    """Write a sequence (any layout ``open_sequence`` reads) as a camera bag; see the module
    docstring for its topics. Returns a summary (path, frames, topics and counts)."""
    from vode_ros.datasets import open_sequence
    seq = open_sequence(input_path, frames=frames)
    if compressed:
        image_topic = image_topic.rstrip("/") + "/compressed"
    m = Messages()
    n_gt = 0
    with BagWriter(out, storage, overwrite) as bag, \
            progress_bar(len(seq), f"vode bag from-dataset {seq.name}", quiet) as bar:
        # connections in a fixed order: camera_info, image, tf
        bag.add_topic(info_topic, CAMERA_INFO)
        bag.add_topic(image_topic, COMPRESSED if compressed else IMAGE)
        if seq.has_ground_truth:
            bag.add_topic("/tf", TF)
        for f in seq:
            t = int(f.stamp_ns)
            # camera_info first: a subscriber has the intrinsics when the image comes
            bag.write(info_topic, CAMERA_INFO, m.camera_info(f.camera, t, frame_id), t)
            if compressed:
                bag.write(image_topic, COMPRESSED,
                          m.compressed(f.image, t, frame_id, jpeg_quality), t)
            else:
                bag.write(image_topic, IMAGE, m.image(f.image, t, frame_id), t)
            if f.gt_pose is not None and np.all(np.isfinite(f.gt_pose)):
                bag.write("/tf", TF, m.tf([m.transform(f.gt_pose, t, gt_parent, gt_child)]), t)
                n_gt += 1
            bar.update(1)
    out_info = bag.summary()
    out_info.update({"input": str(input_path), "layout": seq.layout, "name": seq.name,
                     "frames": len(seq), "ground_truth_poses": n_gt,
                     "camera": asdict(seq.camera)})
    return out_info
