"""Depth in the odometry's unit: plane sweep on synthetic views with exact depth, alignment on
known cases, fusion, and the depth sources on a synthetic sequence with known poses."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vode_ros.camera import Camera
from vode_ros.config import DepthConfig
from vode_ros.datasets import synth
from vode_ros.depth.alignment import (
    AFFINE,
    METRIC,
    RELATIVE,
    Alignment,
    alignment_model,
    fit_affine_inverse,
    fit_scale,
)
from vode_ros.depth.fusion import (
    DepthImage,
    confidence_from_sigma,
    fuse,
    measure_spread,
    propagate,
    propagation_sigma,
    reproject,
)
from vode_ros.depth.plane_sweep import SweepParams, SweepView, plane_homography, plane_sweep
from vode_ros.depth.source import FusedDepth, KeyframeDepth, working_camera
from vode_ros.geometry import invert
from vode_ros.inference import ModelSpec

W, H = 160, 120
FINE = SweepParams(planes=48)       # 0.3-20 m is a wider range than the pipeline sweeps


def grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)


@pytest.fixture(scope="module", params=[("room", "loop"), ("corridor", "straight")])
def views(request):
    """A reference view (frame 30) with exact depth and two earlier views of the sequence."""
    scene_name, trajectory = request.param
    scene = synth.make_scene(scene_name, 0)
    poses = synth.make_trajectory(scene, trajectory, 60, 0)
    cam = synth.default_camera(W, H)
    r = synth.Renderer(scene, cam)
    img, gt = r.render(poses[30])
    sources = [SweepView(grey(r.render(poses[j])[0]), cam, invert(poses[j]) @ poses[30])
               for j in (26, 22)]
    return grey(img), cam, sources, gt


def test_plane_homography_maps_points_of_the_plane():
    K = np.array([[100.0, 0, 80], [0, 100.0, 60], [0, 0, 1]])
    T = np.eye(4)
    T[:3, 3] = (0.3, -0.1, 0.05)
    X = np.array([0.4, -0.2, 2.5])                  # on the plane z = 2.5 of the reference
    H_ = plane_homography(K, K, T, 1 / 2.5)
    p = K @ X
    q = H_ @ (p / p[2])
    Xs = T[:3, :3] @ X + T[:3, 3]
    want = K @ Xs
    np.testing.assert_allclose(q[:2] / q[2], want[:2] / want[2], atol=1e-9)


def test_plane_sweep_recovers_exact_depth(views):
    ref, cam, sources, gt = views
    res = plane_sweep(ref, cam, sources, 0.3, 20.0, FINE)
    known = np.isfinite(res.depth) & np.isfinite(gt)
    assert known.mean() > 0.3, f"only {known.mean():.0%} of the pixels are known"
    rel = np.abs(res.depth[known] - gt[known]) / gt[known]
    assert np.median(rel) < 0.05
    assert np.mean(rel < 0.1) > 0.8
    confident = known & (res.confidence > 0.7)
    assert np.median(np.abs(res.depth[confident] - gt[confident]) / gt[confident]) < 0.04
    assert np.all(res.confidence[~np.isfinite(res.depth)] == 0)
    assert np.all((res.confidence >= 0) & (res.confidence <= 1))


def test_plane_sweep_depth_scales_with_the_poses(views):
    """Poses in another unit (translation x 2.5): depth comes out in that unit."""
    ref, cam, sources, gt = views
    scaled = []
    for v in sources:
        T = v.T_src_ref.copy()
        T[:3, 3] *= 2.5
        scaled.append(SweepView(v.grey, v.camera, T))
    res = plane_sweep(ref, cam, scaled, 0.75, 50.0, FINE)
    known = np.isfinite(res.depth) & np.isfinite(gt)
    assert np.median(res.depth[known] / gt[known]) == pytest.approx(2.5, rel=0.03)


def test_plane_sweep_is_unknown_without_parallax_or_texture(views):
    ref, cam, sources, _ = views
    static = [SweepView(ref, cam, np.eye(4)), SweepView(ref, cam, np.eye(4))]
    res = plane_sweep(ref, cam, static, 0.3, 20.0)
    assert np.isnan(res.depth).all() and res.confidence.max() == 0
    flat = np.full_like(ref, 128.0)
    moving = [SweepView(flat, cam, v.T_src_ref) for v in sources]
    res = plane_sweep(flat, cam, moving, 0.3, 20.0)
    assert np.isnan(res.depth).all() and res.confidence.max() == 0


def test_plane_sweep_knows_depth_less_well_near_the_epipole_of_forward_motion():
    """A camera moving straight ahead: pixels near the image centre (the epipole) move little
    per unit of inverse depth, so their depth is known less well than at the edges; a pixel
    too near it is unknown rather than guessed. Everything else alike (a textured wall at one
    depth), only the parallax differs."""
    rng = np.random.default_rng(3)
    cam = synth.default_camera(W, H)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (H, W)).astype(np.float32), (0, 0), 1.0)
    z = 4.0
    T = np.eye(4)
    T[2, 3] = -0.4                      # the source is 0.4 behind: the reference moved ahead
    # the source's view of the wall z = 4 of the reference: warp by the plane's homography
    Hs = plane_homography(cam.K, cam.K, T, 1.0 / z)
    src = cv2.warpPerspective(tex, Hs, (W, H), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
    res = plane_sweep(tex, cam, [SweepView(src, cam, T)], 1.0, 40.0, FINE)
    ys, xs = np.mgrid[0:H, 0:W]
    r = np.hypot(xs - cam.K[0, 2], ys - cam.K[1, 2])
    centre, edge = r < 15, (r > 55) & (r < 70)
    known_edge = edge & np.isfinite(res.depth)
    assert known_edge.mean() > 0.5 * edge.mean()
    assert np.median(np.abs(res.depth[known_edge] - z) / z) < 0.05
    sig_centre = res.sigma_log[centre & np.isfinite(res.sigma_log)]
    sig_edge = res.sigma_log[known_edge]
    assert sig_centre.size == 0 or np.median(sig_centre) > 2 * np.median(sig_edge)
    assert np.isfinite(res.depth[r < 3]).sum() == 0          # at the epipole: unknown
    # in between, the depth is known, less well the nearer the epipole (parallax ~ radius)
    mid = (r > 25) & (r < 35) & np.isfinite(res.sigma_log)
    assert mid.sum() > 100
    assert np.median(res.sigma_log[mid]) > 1.4 * np.median(sig_edge)
    # the plane spacing alone (no match term) does not see it: the same depth everywhere
    flat = plane_sweep(tex, cam, [SweepView(src, cam, T)], 1.0, 40.0,
                       SweepParams(planes=48, match_sigma_px=1e-6, max_sigma_log=10.0))
    fm, fe = mid & np.isfinite(flat.sigma_log), edge & np.isfinite(flat.sigma_log)
    assert np.median(flat.sigma_log[fm]) < 1.2 * np.median(flat.sigma_log[fe])


def test_plane_sweep_tolerates_an_exposure_change(views):
    ref, cam, sources, gt = views
    brighter = [SweepView(np.clip(v.grey * 1.4 + 20, 0, 255), v.camera, v.T_src_ref)
                for v in sources]
    res = plane_sweep(ref, cam, brighter, 0.3, 20.0, FINE)
    known = np.isfinite(res.depth) & np.isfinite(gt)
    assert known.mean() > 0.25
    assert np.median(np.abs(res.depth[known] - gt[known]) / gt[known]) < 0.05


# -- alignment -------------------------------------------------------------------------------------
def test_alignment_model_follows_the_output_kind():
    assert alignment_model("disparity", metric=False) == RELATIVE
    assert alignment_model("depth", metric=True) == METRIC
    assert alignment_model("affine_inverse_depth", metric=False) == AFFINE


def test_depth_alignment_can_be_chosen_for_any_model_but_a_metric_one():
    for choice, model in (("auto", RELATIVE), ("scale", RELATIVE), ("affine_inverse", AFFINE)):
        src = KeyframeDepth(DepthConfig(alignment=choice), _spec(), False)
        assert src.alignment.model == model
    src = KeyframeDepth(DepthConfig(alignment="scale"), _spec("affine_inverse_depth"), False)
    assert src.alignment.model == RELATIVE
    metric = KeyframeDepth(DepthConfig(alignment="affine_inverse"), _spec("depth", "metric"),
                           True)
    assert metric.alignment.model == METRIC


def test_scale_fit_is_exact_and_robust():
    rng = np.random.default_rng(0)
    z = rng.uniform(0.5, 8.0, 2000)
    net = z / 3.7
    net[:600] *= rng.uniform(0.3, 3.0, 600)          # 30 % of the pixels wrong
    assert fit_scale(net, z) == pytest.approx(3.7, rel=0.02)


def test_scale_fit_weighs_the_target_by_its_certainty():
    """Most target pixels far and loosely known (and biased, as a network that compresses far
    depth sees them), a minority near and well known: the inverse-variance weighted fit
    follows the well-known ones; the unweighted median follows the majority."""
    rng = np.random.default_rng(2)
    z = rng.uniform(0.5, 8.0, 3000)
    net = z / 2.0
    net[:2000] *= 1.8                                 # the far majority: another ratio
    sigma = np.where(np.arange(3000) < 2000, 0.4, 0.03)
    assert fit_scale(net, z) == pytest.approx(2.0 / 1.8, rel=0.02)
    assert fit_scale(net, z, sigma) == pytest.approx(2.0, rel=0.02)
    al = Alignment(RELATIVE)
    assert al.update(net, z, sigma) and al.a == pytest.approx(2.0, rel=0.02)


def test_affine_inverse_fit_recovers_scale_and_shift():
    rng = np.random.default_rng(1)
    z = rng.uniform(0.5, 8.0, 3000)
    a, b = 2.0, -0.05                                 # 1/z = a / d + b  ->  d = a / (1/z - b)
    d = a / (1.0 / z - b)
    d_noisy = d.copy()
    d_noisy[:300] *= rng.uniform(0.5, 2.0, 300)       # 10 % outliers
    fa, fb = fit_affine_inverse(d_noisy, z)
    assert fa == pytest.approx(a, rel=0.02) and fb == pytest.approx(b, abs=0.01)
    al = Alignment(AFFINE, gain=1.0, min_pixels=10)
    assert al.update(d.reshape(60, 50), z.reshape(60, 50))
    np.testing.assert_allclose(al.apply(d.astype(np.float32)), z, rtol=1e-3)


def test_running_alignment_needs_pixels_and_moves_by_its_gain():
    al = Alignment(RELATIVE, gain=0.5, min_pixels=100)
    net = np.ones((20, 20), np.float32)
    assert not al.update(net, np.full((20, 20), np.nan))
    assert al.a == 1.0
    assert al.update(net, np.full((20, 20), 4.0)) and al.a == pytest.approx(4.0)  # first: whole
    assert al.update(net, np.full((20, 20), 16.0)) and al.a == pytest.approx(8.0)  # log mean
    metric = Alignment(METRIC)
    assert not metric.update(net, np.full((20, 20), 4.0))
    assert metric.apply(net) is net


# -- fusion ----------------------------------------------------------------------------------------
def test_fusion_weighs_by_inverse_variance_in_log_depth():
    net = DepthImage(np.full((2, 2), 2.0, np.float32), np.full((2, 2), 0.2, np.float32))
    mv = DepthImage(np.array([[8.0, np.nan], [8.0, 8.0]], np.float32),
                    np.array([[0.2, np.nan], [0.02, 0.2]], np.float32))
    out = fuse(net, mv)
    assert out.depth[0, 0] == pytest.approx(4.0)           # equal weights: geometric mean
    assert out.depth[0, 1] == pytest.approx(2.0)           # network alone
    assert out.depth[1, 0] == pytest.approx(8.0, rel=0.03)  # confident multi-view wins
    assert out.sigma_log[0, 0] == pytest.approx(0.2 / np.sqrt(2))
    c = confidence_from_sigma(np.array([0.1, np.nan, 0.01]))
    np.testing.assert_allclose(c, [0.5, 0.0, 1 / 1.01], rtol=1e-6)


def test_reprojection_carries_depth_to_a_moved_camera():
    cam = Camera(100.0, 100.0, 79.5, 59.5, 160, 120)
    depth = DepthImage(np.full((120, 160), 4.0, np.float32), np.full((120, 160), 0.05,
                                                                    np.float32))
    same = reproject(depth, cam, np.eye(4), cam)
    np.testing.assert_allclose(same.depth, 4.0)
    T = np.eye(4)
    T[2, 3] = -1.0                                     # the camera moved 1 forward
    moved = reproject(depth, cam, T, cam)
    assert np.nanmedian(moved.depth) == pytest.approx(3.0)
    assert np.isnan(moved.depth).any()                 # the border gets no point


def test_working_camera_keeps_pixel_centres():
    cam = Camera(525.0, 525.0, 319.5, 239.5, 640, 480)
    w = working_camera(cam, 160)
    assert (w.width, w.height) == (160, 120)
    assert (w.cx, w.cy) == (pytest.approx(79.5), pytest.approx(59.5)) and w.fx == 131.25



def test_spread_depth_is_trusted_as_far_as_it_proves_right_in_the_scene():
    """Multi-view depth known on 40 % of the pixels: on a smooth slope (a road) the spread
    depth is right and the measured deviation stays at its floor; on clutter (boxes of random
    depth, 8 px) it is wrong by about what is measured, and far more than on the slope."""
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    known = rng.random((h, w)) < 0.4
    slope = np.exp(0.5 + 0.003 * xx).astype(np.float32)
    boxes = np.exp(rng.uniform(0, 1.5, (h // 8 + 1, w // 8 + 1))).repeat(8, 0).repeat(8, 1)
    boxes = boxes[:h, :w].astype(np.float32)
    measured = {}
    for name, depth in (("slope", slope), ("boxes", boxes)):
        mv = np.where(known, depth, np.nan).astype(np.float32)
        measured[name] = propagation_sigma(mv, 32.0, 0.01)
        spread = propagate(DepthImage(mv, np.full((h, w), 0.01, np.float32)), 32.0,
                           measured[name])
        z = np.abs(np.log(spread.depth[~known] / depth[~known])) / spread.sigma_log[~known]
        if name == "boxes":
            # the spread pixels' errors over their standard deviation: about one
            assert 0.5 < 1.4826 * np.median(z) < 2.0
    assert measured["slope"] < 0.05
    assert measured["boxes"] > 5 * measured["slope"]
    assert propagation_sigma(np.full((h, w), np.nan, np.float32), 32.0, 0.01) is None


def test_spread_follows_the_network_as_far_as_its_shape_proves_right():
    """Multi-view depth known on 40 % of a cluttered scene (boxes of random depth). A network
    right in shape but off by a smooth scale field is followed fully (share 1) and the spread
    depth is then near exact on the unknown pixels, where spreading the depth as it is fails; a
    network whose shape is noise on a smooth slope is not followed (share 0)."""
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    known = rng.random((h, w)) < 0.4
    boxes = np.exp(rng.uniform(0, 1.5, (h // 8 + 1, w // 8 + 1))).repeat(8, 0).repeat(8, 1)
    boxes = boxes[:h, :w].astype(np.float32)
    field = np.exp(0.3 * np.sin(xx / 80.0) + 0.2 * yy / h).astype(np.float32)
    mv = DepthImage(np.where(known, boxes, np.nan).astype(np.float32),
                    np.full((h, w), 0.01, np.float32))
    network = boxes * field
    shape, sigma = measure_spread(mv.depth, network, 32.0, 0.01)
    assert shape == 1.0 and sigma < 0.03
    followed = propagate(mv, 32.0, sigma, network, shape).depth
    as_is = propagate(mv, 32.0, sigma).depth
    err = {name: np.median(np.abs(np.log(d[~known] / boxes[~known])))
           for name, d in (("followed", followed), ("as_is", as_is))}
    assert err["followed"] < 0.02 and err["as_is"] > 0.1
    slope = np.exp(0.5 + 0.003 * xx).astype(np.float32)
    noise = np.exp(rng.normal(0, 0.4, (h // 8 + 1, w // 8 + 1))).repeat(8, 0).repeat(8, 1)
    smooth = np.where(known, slope, np.nan).astype(np.float32)
    shape, _ = measure_spread(smooth, (slope * noise[:h, :w]).astype(np.float32), 32.0, 0.01)
    assert shape == 0.0
    assert measure_spread(np.full((h, w), np.nan, np.float32), network, 32.0, 0.01) is None


def test_multiview_outliers_are_left_out_of_the_spread_and_the_fusion():
    """A slope known on 40 % of the pixels, 8 % of them matched wrongly (the depth times 3, as
    a reflection seen behind a surface): with rejection at 3 sigma the spread on the unknown
    pixels is right again, and the fused output at the wrong pixels follows the spread, not the
    outliers."""
    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(1)
    known = rng.random((h, w)) < 0.4
    wrong = known & (rng.random((h, w)) < 0.08)
    slope = np.exp(0.5 + 0.004 * xx + 0.002 * yy).astype(np.float32)
    mv_depth = np.where(known, slope, np.nan) * np.where(wrong, 3.0, 1.0)
    mv = DepthImage(mv_depth.astype(np.float32), np.full((h, w), 0.05, np.float32))
    err = {}
    for reject in (0.0, 3.0):
        spread = propagate(mv, 32.0, 0.03, slope, 1.0, reject).depth
        err[reject] = np.median(np.abs(np.log(spread[~known] / slope[~known])))
    assert err[3.0] < 0.01 < err[0.0]
    cfg = DepthConfig(outlier_sigmas=3.0, propagation_measured=False,
                      propagation_sigma_log=0.03, propagation_shape=1.0)
    src = FusedDepth(cfg, _spec(), False)
    cam = working_camera(synth.default_camera(320, 240), cfg.working_width)
    aligned = DepthImage(slope.copy(), np.full((h, w), 0.3, np.float32))
    out = src._combine(aligned, mv, cam)
    assert np.median(np.abs(np.log(out.depth[wrong] / slope[wrong]))) < 0.02

# -- the depth sources on a sequence with known poses ----------------------------------------------
def _spec(output="disparity", scale="relative") -> ModelSpec:
    return ModelSpec(kind="depth", input_height=48, input_width=64, mean=(0.45,) * 3,
                     std=(0.225,) * 3, scale=scale, output=output, min_depth=0.1,
                     max_depth=100.0)


def _run(source, frames, unit: float, network):
    """Feed a sequence (poses in metres x ``unit``) with a network depth ``network(gt)``;
    returns [(output, gt)]."""
    outs = []
    for img, gt, T in frames:
        T = T.copy()
        T[:3, 3] *= unit
        net = network(gt)
        outs.append((source.update(img, synth.default_camera(320, 240), T, net), gt))
    return outs


@pytest.fixture(scope="module")
def sequence():
    scene = synth.make_scene("room", 3)
    poses = synth.make_trajectory(scene, "loop", 90, 3)
    r = synth.Renderer(scene, synth.default_camera(320, 240))
    return [(*r.render(T), T) for T in poses]


def _ratio_to_gt(out, gt):
    g = cv2.resize(gt, (out.camera.width, out.camera.height), interpolation=cv2.INTER_NEAREST)
    ok = np.isfinite(g) & np.isfinite(out.depth)
    return out.depth[ok] / g[ok], out.confidence[ok]


def test_fused_depth_comes_out_in_the_odometry_unit(sequence):
    """Network depth 3x too small with 20 % error noise; poses in units of 0.5 m: the output is
    in the poses' unit (depth / gt = 2) and fused depth beats the network's."""
    unit = 2.0
    rng = np.random.default_rng(0)

    def network(gt):
        noise = np.exp(rng.normal(0, 0.2, (12, 16))).astype(np.float32)
        noise = cv2.resize(noise, (64, 48), interpolation=cv2.INTER_LINEAR)
        return cv2.resize(np.nan_to_num(gt, nan=20.0), (64, 48)) / 3.0 * noise

    cfg = DepthConfig()
    fused = _run(FusedDepth(cfg, _spec(), False), sequence, unit, network)
    rng = np.random.default_rng(0)
    plain = _run(KeyframeDepth(cfg, _spec(), False), sequence, unit, network)
    assert sum(o.keyframe for o, _ in fused) >= 3
    late = slice(len(sequence) // 2, None)
    for outs in (fused, plain):
        ratios = np.concatenate([_ratio_to_gt(o, g)[0] for o, g in outs[late]])
        assert np.median(ratios) == pytest.approx(unit, rel=0.05)
    err = {}
    for name, outs in (("fused", fused), ("network", plain)):
        r = np.concatenate([_ratio_to_gt(o, g)[0] for o, g in outs[late]])
        err[name] = float(np.mean(np.abs(r / unit - 1)))
    assert err["fused"] < 0.8 * err["network"], err
    conf = np.concatenate([_ratio_to_gt(o, g)[1] for o, g in fused[late]])
    assert conf.max() > 0.8 and np.median(conf) < 0.9


def test_static_camera_keeps_the_network_and_low_confidence(sequence):
    img, gt, T = sequence[0]
    src = FusedDepth(DepthConfig(), _spec(), False)
    net = cv2.resize(np.nan_to_num(gt, nan=20.0), (64, 48))
    for _ in range(10):
        out = src.update(img, synth.default_camera(320, 240), T, net)
    assert not out.keyframe and out.confidence.max() < 0.4
    assert (out.depth.shape[1], out.camera.width) == (160, 160)


def test_full_resolution_output(sequence):
    img, _, T = sequence[0]
    cfg = DepthConfig(resolution="full")
    out = FusedDepth(cfg, _spec(), False).update(img, synth.default_camera(320, 240), T,
                                                 np.ones((48, 64), np.float32))
    assert out.depth.shape == (240, 320) and out.confidence.shape == (240, 320)
    assert out.camera == synth.default_camera(320, 240)


# -- evaluation ------------------------------------------------------------------------------------
def test_eval_scores_depth_with_one_scale_for_the_run_and_the_unit_ratio():
    from types import SimpleNamespace

    from vode_ros.evaluation.evaluate import _depth_metrics
    from vode_ros.evaluation.metrics import DepthEvaluation
    rng = np.random.default_rng(0)
    ev = DepthEvaluation()
    for k in range(5):
        gt = rng.uniform(0.5, 5.0, (24, 32)).astype(np.float32)
        ev.add(gt, gt / (2.0 * (1 + 0.01 * k)))       # depth unit: 2 m, drifting 1 % an image
    assert ev.with_ratio(2.04)["abs_rel"] < 0.03
    assert ev.with_ratio(1.0)["abs_rel"] == pytest.approx(0.51, abs=0.01)   # 1 - 1 / 2.04
    depth, _ = _depth_metrics(SimpleNamespace(depth=ev), odometry_scale=2.0)
    assert depth["unit_ratio"] == pytest.approx(1.02, abs=1e-6)      # median image: k = 2
    assert depth["run_scale"]["abs_rel"] < 0.03
    assert depth["scale_spread"] == pytest.approx(0.0139, abs=0.001)


def test_deferred_sweep_repeats_exactly(sequence):
    """The sweep runs on its own thread; its depth joins at a fixed frame, so two runs agree."""
    def run():
        src = FusedDepth(DepthConfig(sweep_delay_frames=2), _spec(), False)
        return [src.update(img, synth.default_camera(320, 240), T,
                           cv2.resize(np.nan_to_num(gt, nan=20.0), (64, 48)) / 3.0)
                for img, gt, T in sequence[:40]]
    a, b = run(), run()
    assert any(o.keyframe for o in a)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.depth, y.depth)
        np.testing.assert_array_equal(x.confidence, y.confidence)
