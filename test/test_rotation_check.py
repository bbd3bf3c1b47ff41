"""The essential matrix's rotation checked against the motion prior (``pose.rotation_check_deg``):
a wrong decomposition gives way to PnP on the map where PnP agrees with the prediction."""
from __future__ import annotations

import json

import numpy as np
from scipy.spatial.transform import Rotation

from vode_ros.config_files import load_config
from vode_ros.evaluation.evaluate import EvalOptions
from vode_ros.motion_prior import MotionPrior
from vode_ros.offline import RunOptions, run


def _turn(deg):
    return Rotation.from_euler("y", deg, degrees=True).as_matrix()


def test_expected_is_constant_velocity_with_its_recent_error():
    prior = MotionPrior()
    prior.predict(None)
    assert prior.expected() is None                         # nothing to predict from yet
    for k in range(3):                 # a turn that speeds up by 0.1 degrees a frame
        prior.predict(None)
        prior.observe(_turn(2.0 + 0.1 * k), consecutive=True)
    prior.predict(None)
    assert prior.expected() is None                         # two errors on record: too few
    prior.observe(_turn(2.3), consecutive=True)
    prior.predict(None)                                     # constant velocity: the last step
    R, err = prior.expected()
    np.testing.assert_allclose(R, _turn(2.3), atol=1e-12)
    assert abs(err - 0.1) < 1e-6                            # its errors: 0.1 degrees each
    for _ in range(5):                 # a network that predicts every step exactly ...
        prior.predict(_turn(2.3))
        prior.observe(_turn(2.3), consecutive=True)
    assert prior.trust_network()
    prior.predict(_turn(5.0))
    R, err = prior.expected()          # ... is still not what geometry is checked against
    np.testing.assert_allclose(R, _turn(2.3), atol=1e-12)
    assert err < 0.1


def _ate(shared_data, tmp_path, gate):
    out = tmp_path / f"gate{gate}"
    run(str(shared_data / "kitti-odometry" / "sequences" / "01"), out,
        load_config(None, ["models.providers=[CPUExecutionProvider]", "depth.source=network",
                           f"pose.rotation_check_deg={gate}"]),
        RunOptions(frames="0:51:2", quiet=True), EvalOptions())
    m = json.loads((out / "metrics.json").read_text())
    assert m["frames_matched"] == 26
    return m["ate_rmse_m"], m["rpe_rot_deg"]["per_frame"]


def test_a_wrong_essential_rotation_on_a_highway_gives_way_to_pnp(shared_data, tmp_path):
    """KITTI 01 (a highway) at 5 Hz: one step's essential matrix turns 2.8 degrees the wrong
    way while constant velocity and PnP on the map agree within 0.3; without the check that one
    step throws the trajectory off."""
    ate_off, rot_off = _ate(shared_data, tmp_path, 0)
    ate_on, rot_on = _ate(shared_data, tmp_path, 1.0)
    assert ate_on < 0.5 * ate_off and rot_on < 0.5 * rot_off, (ate_off, ate_on, rot_off, rot_on)


def test_a_moving_camera_is_not_held_where_the_essential_matrix_has_few_inliers(shared_data,
                                                                                 tmp_path):
    """7-Scenes at a twelfth of its frame rate: at frame 72 Lucas-Kanade keeps 33 tracks, the
    essential matrix has 22 inliers (pose.min_inliers 30) and PnP too few map points. The
    second try on pose.min_inliers_moving answers it; without it the rotation-only pose holds
    the position (frames 12 and 24, before the map, are rotation-only either way)."""
    counts = {}
    for n in (0, 15):
        out = tmp_path / f"moving{n}"
        run(str(shared_data / "7scenes-redkitchen"), out,
            load_config(None, ["models.providers=[CPUExecutionProvider]", "depth.source=network",
                               f"pose.min_inliers_moving={n}"]),
            RunOptions(frames="0:85:12", quiet=True), EvalOptions())
        counts[n] = json.loads((out / "run.json").read_text())["backend_counts"]
    rotation = {n: c.get("geometric (rotation)", 0) for n, c in counts.items()}
    assert rotation[0] > rotation[15], counts

