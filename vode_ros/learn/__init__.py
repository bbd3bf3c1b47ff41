"""Training side of vode_ros: networks, losses, datasets, trainer and ONNX export (needs torch).

Nothing outside this package imports torch; the robot runtime only loads the exported ONNX files.
"""
