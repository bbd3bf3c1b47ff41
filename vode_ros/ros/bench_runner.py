"""The node side of ``vode bench``: the real VodeNode, created in-process on a private context and
fed sensor_msgs/Image messages through ``process_message`` (decode to publish, as on a robot)."""
from __future__ import annotations

import rclpy
from rclpy.parameter import Parameter
from std_msgs.msg import Header

from vode_ros.config import VodeConfig
from vode_ros.errors import ModelError
from vode_ros.ros import conversions as conv
from vode_ros.ros.node import VodeNode


class NodeRunner:
    def __init__(self, cfg: VodeConfig):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        overrides = [Parameter(name, value=value) for name, value, _ in cfg.parameters()]
        self.node = VodeNode(context=self.context, parameter_overrides=overrides)
        if self.node.vo is None:
            message = self.node.model_error
            self.close()
            raise ModelError(message)
        self.vo = self.node.vo
        self.info_for = None

    def step(self, stamp_ns, image, camera):
        header = Header(stamp=conv.ns_to_stamp(stamp_ns), frame_id="camera_optical_frame")
        if self.info_for != camera:
            self.node.camera_info = conv.camera_to_camera_info(camera, header)
            self.info_for = camera
        return self.node.process_message(conv.rgb_to_image(image, header))

    def reset(self):
        self.node.vo.reset()
        self.node.path.clear()

    def close(self):
        if getattr(self, "node", None) is not None:
            self.node.shutdown()
            self.node.destroy_node()
            self.node = None
        rclpy.try_shutdown(context=self.context)
