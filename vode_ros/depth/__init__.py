"""Dense depth in the odometry's unit.

- ``network``: the depth model of the contract (disparity, depth or affine-invariant inverse
  depth) run on one frame;
- ``plane_sweep``: multi-view depth at keyframes from the odometry's own poses;
- ``alignment``: the network's depth brought to the odometry's unit (scale, or scale and shift in
  inverse depth);
- ``fusion``: the aligned network depth and the confident multi-view depth made one image, with
  a confidence;
- ``source``: the depth sources the odometry runs (``network`` or ``fused``).
"""
from vode_ros.depth.network import DepthEstimator, disparity_to_depth, sample_depth

__all__ = ["DepthEstimator", "disparity_to_depth", "sample_depth"]
