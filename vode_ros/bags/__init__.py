"""ROS 2 bags written and read with ``rosbags``: no ROS install, no rclpy.

- ``typestore``: message type names and the rosbags type stores;
- ``paths``: where a bag is (OUT.mcap, OUT.db3 or a rosbag2 folder) and ``BagError``;
- ``writer``: ``BagWriter``, a bag written atomically, with the QoS ``ros2 bag play`` re-offers;
- ``messages``: rosbags messages of vode's topics (``Messages``), with the node's conventions;
- ``reader``: ``open_reader``, ``read_messages``, ``bag_info``, ``read_odometry``, ...;
- ``tf``: ``TfTree``, the transforms of /tf and /tf_static looked up per stamp;
- ``from_dataset``: ``dataset_to_bag``, a sequence as a camera bag (``vode bag from-dataset``);
- ``odometry``: ``OdometryBag``, what vode_node publishes, as a bag (``vode process --out-bag``).

Playing and recording on a live ROS graph need rclpy and live in ``vode_ros.ros.bag``; reading a
bag as a dataset is ``vode_ros.datasets.rosbag``.
"""
