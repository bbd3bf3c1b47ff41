"""Build the VisualOdometry pipeline from the configuration (models, providers, backend)."""
from __future__ import annotations

import os
from pathlib import Path

from vode_ros.config import VodeConfig
from vode_ros.depth import DepthEstimator
from vode_ros.errors import ConfigError
from vode_ros.geometry import from_xyz_rpy
from vode_ros.inference import OnnxModel
from vode_ros.odometry import VisualOdometry
from vode_ros.pose import NetworkPose, PoseBackend

PACKAGE = "vode_ros"
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def package_share() -> Path | None:
    """The installed share directory (colcon / ament), when there is one."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: BLE001 - not installed through ament, or no AMENT_PREFIX_PATH
        return None


def resolve_path(path: str) -> Path:
    """An absolute path as is; a relative one against the working directory, the package share
    directory, then the source checkout (first that exists; else the working-directory path)."""
    p = Path(os.path.expanduser(path))
    if p.is_absolute():
        return p
    candidates = [Path.cwd() / p]
    share = package_share()
    if share is not None:
        candidates.append(share / p)
    candidates.append(SOURCE_ROOT / p)
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


def build_odometry(cfg: VodeConfig) -> VisualOdometry:
    """Load the models named in ``cfg.models`` and assemble the pipeline (raises ModelError)."""
    m = cfg.models
    depth_model = OnnxModel(resolve_path(m.depth), "depth", m.providers, m.intra_op_threads)
    pose_model = OnnxModel(resolve_path(m.pose), "pose", m.providers, m.intra_op_threads)
    depth = DepthEstimator(depth_model, cfg.odometry.min_valid_depth_fraction)
    return VisualOdometry(cfg, depth, build_pose_backend(cfg, depth, pose_model))


def build_pose_backend(cfg: VodeConfig, depth: DepthEstimator, pose_model: OnnxModel
                       ) -> PoseBackend:
    """The pose backend named by ``pose.backend`` (network, geometric or hybrid) on the pose
    model ``pose_model`` and the depth model of ``depth``."""
    backend = cfg.pose.backend
    network = NetworkPose(pose_model, depth.spec)
    if backend == "network":
        return network
    from vode_ros.hybrid import HybridPose
    from vode_ros.tracker import GeometricPose
    try:
        geometric = GeometricPose(cfg.pose, cfg.flow, depth.spec, model=network.model,
                                  base_to_camera=from_xyz_rpy(cfg.camera.base_to_camera_xyz,
                                                              cfg.camera.base_to_camera_rpy),
                                  ground_window=cfg.scale.ground_window,
                                  ground_min_confidence=cfg.scale.ground_min_confidence)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if backend == "geometric":
        return geometric
    guess = cfg.pose.network_guess
    use_guess = guess == "on" or (guess == "auto" and network.spec.is_trained)
    return HybridPose(geometric, network, use_guess)
