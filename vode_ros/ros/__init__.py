"""ROS 2 glue: the node and message conversion (the only place that imports rclpy)."""
