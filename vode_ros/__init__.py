"""vode_ros: monocular visual odometry and depth for ROS 2.

The core modules (camera, geometry, imaging, inference, depth, pose, odometry) need neither ROS
nor torch; ``vode_ros.ros`` holds the node, ``vode_ros.learn`` the training code.
"""
__version__ = "0.1.0"
