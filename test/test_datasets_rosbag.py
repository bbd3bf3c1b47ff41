"""ROS 2 bag reader on bags written here with rosbags (mcap and sqlite3 storage)."""
import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vode_ros.datasets import DatasetError, detect_layout, open_sequence, synth
from vode_ros.imaging import rgb_to_raw

rosbag2 = pytest.importorskip("rosbags.rosbag2")
typesys = pytest.importorskip("rosbags.typesys")

N = 8
T0_NS = 1_700_000_000_000_000_000
DT_NS = 33_333_333
# camera optical frame in base_link: the usual body (x fwd, y left, z up) -> optical rotation
T_BASE_CAM = np.eye(4)
T_BASE_CAM[:3, :3] = synth.R_BODY_OPTICAL
T_BASE_CAM[:3, 3] = [0.1, 0.0, 0.2]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    path = synth.generate_sequence(tmp_path_factory.mktemp("bag_src") / "s", scene="room",
                                   trajectory="turn", n_frames=N, width=96, height=72, seed=2)
    return list(open_sequence(path))


def _ts():
    return typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)


def _header(ts, stamp_ns, frame_id):
    Time = ts.types["builtin_interfaces/msg/Time"]
    Header = ts.types["std_msgs/msg/Header"]
    return Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame_id)


def _transform(ts, T):
    g = "geometry_msgs/msg/"
    q = Rotation.from_matrix(T[:3, :3]).as_quat()
    return ts.types[g + "Transform"](
        translation=ts.types[g + "Vector3"](x=T[0, 3], y=T[1, 3], z=T[2, 3]),
        rotation=ts.types[g + "Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3]))


def _pose(ts, T):
    g = "geometry_msgs/msg/"
    q = Rotation.from_matrix(T[:3, :3]).as_quat()
    return ts.types[g + "Pose"](position=ts.types[g + "Point"](x=T[0, 3], y=T[1, 3], z=T[2, 3]),
                                orientation=ts.types[g + "Quaternion"](x=q[0], y=q[1], z=q[2],
                                                                       w=q[3]))


def write_bag(path, frames, storage="mcap", encoding="rgb8", topic="/camera/image_raw",
              compressed=False, camera_info=True, gt="tf", extra_topic=None):
    ts = _ts()
    plugin = rosbag2.StoragePlugin.MCAP if storage == "mcap" else rosbag2.StoragePlugin.SQLITE3
    Image = ts.types["sensor_msgs/msg/Image"]
    CompressedImage = ts.types["sensor_msgs/msg/CompressedImage"]
    CameraInfo = ts.types["sensor_msgs/msg/CameraInfo"]
    ROI = ts.types["sensor_msgs/msg/RegionOfInterest"]
    TFMessage = ts.types["tf2_msgs/msg/TFMessage"]
    TS = ts.types["geometry_msgs/msg/TransformStamped"]
    cam = frames[0].camera
    with rosbag2.Writer(path, version=9, storage_plugin=plugin) as w:
        img_type = CompressedImage.__msgtype__ if compressed else Image.__msgtype__
        c_img = w.add_connection(topic, img_type, typestore=ts)
        c_extra = w.add_connection(extra_topic, Image.__msgtype__, typestore=ts) \
            if extra_topic else None
        ns = topic.rsplit("/", 1)[0]
        c_info = w.add_connection(ns + "/camera_info", CameraInfo.__msgtype__, typestore=ts) \
            if camera_info else None
        if gt == "tf":
            c_tf = w.add_connection("/tf", TFMessage.__msgtype__, typestore=ts)
            c_static = w.add_connection("/tf_static", TFMessage.__msgtype__, typestore=ts)
            static = TFMessage(transforms=[TS(header=_header(ts, T0_NS, "base_link"),
                                              child_frame_id="camera_optical_frame",
                                              transform=_transform(ts, T_BASE_CAM))])
            w.write(c_static, T0_NS - 1, ts.serialize_cdr(static, TFMessage.__msgtype__))
        elif gt == "odom":
            Odom = ts.types["nav_msgs/msg/Odometry"]
            PWC = ts.types["geometry_msgs/msg/PoseWithCovariance"]
            TWC = ts.types["geometry_msgs/msg/TwistWithCovariance"]
            Twist = ts.types["geometry_msgs/msg/Twist"]
            V3 = ts.types["geometry_msgs/msg/Vector3"]
            c_odom = w.add_connection("/ground_truth/odom", Odom.__msgtype__, typestore=ts)
        for i, f in enumerate(frames):
            stamp = T0_NS + i * DT_NS
            header = _header(ts, stamp, "camera_optical_frame")
            if compressed:
                ok, buf = cv2.imencode(".png", cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))
                msg = CompressedImage(header=header, format="rgb8; png compressed bgr8",
                                      data=np.frombuffer(buf.tobytes(), np.uint8))
            else:
                data, step = rgb_to_raw(f.image, encoding)
                msg = Image(header=header, height=72, width=96, encoding=encoding,
                            is_bigendian=0, step=step, data=np.frombuffer(data, np.uint8))
            w.write(c_img, stamp + 2_000_000, ts.serialize_cdr(msg, img_type))
            if c_extra is not None:
                data, step = rgb_to_raw(f.image, "mono8")
                m2 = Image(header=header, height=72, width=96, encoding="mono8", is_bigendian=0,
                           step=step, data=np.frombuffer(data, np.uint8))
                w.write(c_extra, stamp + 3_000_000, ts.serialize_cdr(m2, Image.__msgtype__))
            if c_info is not None:
                K = cam.K
                info = CameraInfo(header=header, height=72, width=96,
                                  distortion_model="plumb_bob", d=np.zeros(5),
                                  k=K.ravel(), r=np.eye(3).ravel(),
                                  p=np.hstack([K, np.zeros((3, 1))]).ravel(), binning_x=0,
                                  binning_y=0, roi=ROI(x_offset=0, y_offset=0, height=0, width=0,
                                                       do_rectify=False))
                w.write(c_info, stamp + 1_000_000, ts.serialize_cdr(info,
                                                                     CameraInfo.__msgtype__))
            T_world_base = f.gt_pose @ np.linalg.inv(T_BASE_CAM)
            if gt == "tf":
                tf = TFMessage(transforms=[TS(header=_header(ts, stamp, "world"),
                                              child_frame_id="base_link",
                                              transform=_transform(ts, T_world_base))])
                w.write(c_tf, stamp, ts.serialize_cdr(tf, TFMessage.__msgtype__))
            elif gt == "odom":
                zero = V3(x=0.0, y=0.0, z=0.0)
                odom = Odom(header=_header(ts, stamp, "world"), child_frame_id="base_link",
                            pose=PWC(pose=_pose(ts, T_world_base), covariance=np.zeros(36)),
                            twist=TWC(twist=Twist(linear=zero, angular=zero),
                                      covariance=np.zeros(36)))
                w.write(c_odom, stamp, ts.serialize_cdr(odom, Odom.__msgtype__))
    return path


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_with_image_camera_info_and_tf(frames, tmp_path, storage):
    bag = write_bag(tmp_path / f"run_{storage}", frames, storage=storage)
    assert detect_layout(bag) == "rosbag"
    seq = open_sequence(bag)
    assert seq.layout == "rosbag" and len(seq) == N
    assert seq.image_topic == "/camera/image_raw"
    assert seq.camera == frames[0].camera
    assert list(seq.stamps_ns) == [T0_NS + i * DT_NS for i in range(N)]
    assert seq.gt_source == "/tf world -> camera_optical_frame"
    got = list(seq)
    for f, ref in zip(got, frames, strict=True):
        assert np.array_equal(f.image, ref.image)
        assert np.allclose(f.gt_pose, ref.gt_pose, atol=1e-9)
        assert f.gt_depth is None
    st, poses = seq.ground_truth()
    assert len(st) == N and np.allclose(poses[3], frames[3].gt_pose)
    # lazy selection and random access read the same frames
    part = open_sequence(bag, frames="2::3")
    assert [f.index for f in part] == [2, 5]
    assert np.array_equal(part[1].image, frames[5].image)
    # a single storage file opens as well
    single = next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    assert detect_layout(single) == "rosbag"
    assert len(open_sequence(single)) == N


def test_encodings_topics_and_choice(frames, tmp_path):
    bag = write_bag(tmp_path / "two", frames, storage="sqlite3", encoding="bgr8",
                    extra_topic="/camera2/image_mono")
    with pytest.raises(DatasetError, match="several image topics.*image_topic=") as err:
        open_sequence(bag)
    assert "/camera/image_raw" in str(err.value) and "/camera2/image_mono" in str(err.value)
    seq = open_sequence(bag, image_topic="/camera/image_raw")
    assert np.array_equal(seq[0].image, frames[0].image)            # bgr8 -> RGB
    mono = open_sequence(bag, image_topic="/camera2/image_mono")
    img = mono[1].image
    assert np.array_equal(img[..., 0], img[..., 2])
    assert np.abs(img[..., 0].astype(int) - cv2.cvtColor(frames[1].image, cv2.COLOR_RGB2GRAY)
                  ).max() <= 1
    with pytest.raises(DatasetError, match="not in the bag"):
        open_sequence(bag, image_topic="/nope")


def test_compressed_images_and_odometry_ground_truth(frames, tmp_path):
    bag = write_bag(tmp_path / "comp", frames, storage="mcap", compressed=True,
                    topic="/cam/image_raw/compressed", camera_info=False, gt="odom")
    with pytest.raises(DatasetError, match="no sensor_msgs/CameraInfo.*comp.intrinsics.txt"):
        open_sequence(bag)
    (tmp_path / "comp.intrinsics.txt").write_text("78.75 78.75 47.5 35.5 96 72\n")
    seq = open_sequence(bag)
    assert seq.camera == frames[0].camera
    assert np.array_equal(seq[2].image, frames[2].image)             # lossless PNG
    assert seq.gt_source == "/ground_truth/odom"
    # Odometry gives base_link; no /tf_static here, so the pose is base_link's
    expected = frames[4].gt_pose @ np.linalg.inv(T_BASE_CAM)
    assert np.allclose(seq[4].gt_pose, expected, atol=1e-9)
    assert open_sequence(bag, gt_topic="")[0].gt_pose is None


def test_broken_bags_raise_dataset_errors(frames, tmp_path):
    bag = write_bag(tmp_path / "ok", frames, storage="mcap")
    mcap = next(bag.glob("*.mcap"))
    truncated = tmp_path / "truncated.mcap"
    truncated.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])
    with pytest.raises(DatasetError, match="could not read ROS 2 bag.*truncated.mcap"):
        list(open_sequence(truncated))
    garbage = tmp_path / "garbage.db3"
    garbage.write_bytes(b"SQLite format 3\0" + b"\x13" * 2000)
    with pytest.raises(DatasetError, match="ROS 2 bag"):
        open_sequence(garbage)
    bad_meta = tmp_path / "bad_meta"
    bad_meta.mkdir()
    (bad_meta / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 9}\n")
    with pytest.raises(DatasetError, match="could not read ROS 2 bag"):
        open_sequence(bad_meta)
    db = write_bag(tmp_path / "db", frames, storage="sqlite3")
    db3 = next(db.glob("*.db3"))
    db3.write_bytes(db3.read_bytes()[:3000])
    with pytest.raises(DatasetError, match="ROS 2 bag"):
        list(open_sequence(db))
