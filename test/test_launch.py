"""launch/vode.launch.py: what it builds, then its node command line run for real.

`launch` and `launch_ros` are not on PyPI, so the launch file is loaded against the stand-ins in
test/launch_standins/ (swapped into sys.modules only while a test evaluates it). They record the
declared arguments, the nodes and their conditions, evaluate substitutions against launch
configurations as `ros2 launch` would, and give the command line launch_ros would run. That command
line then starts vode_node in its own process, and a real rclpy peer checks it in the graph.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from ros_harness import REPO, NodeProcess, ros_environment, unique_domain_id
from vode_ros.config import VodeConfig
from vode_ros.config_files import load_config

LAUNCH_FILE = REPO / "launch" / "vode.launch.py"
STANDINS = Path(__file__).resolve().parent / "launch_standins"
STANDIN_MODULES = ("launch", "launch.actions", "launch.conditions", "launch.substitutions",
                   "launch_ros", "launch_ros.actions", "launch_ros.substitutions")
HALF_PI = 1.5707963267948966

DOCUMENTED_DEFAULTS = {
    "image": "/camera/image_raw", "camera_info": "/camera/camera_info",
    "params_file": str(REPO / "config" / "vode.yaml"), "namespace": "",
    "use_rviz": "false", "use_sim_time": "false", "use_compressed": "false", "managed": "false",
    "camera_x": "0.0", "camera_y": "0.0", "camera_z": "0.0",
    "camera_roll": "-1.5707963267948966", "camera_pitch": "0.0",
    "camera_yaw": "-1.5707963267948966",
}
ROBOT1 = {"image": "/cam/img", "camera_info": "/cam/info", "namespace": "robot1",
          "camera_x": "0.1"}


# -- loading the launch file against the stand-ins -------------------------------------------------
def _is_launch_module(name: str) -> bool:
    return name.split(".")[0] in ("launch", "launch_ros")


@contextlib.contextmanager
def standins():
    """The stand-in `launch`/`launch_ros` in sys.modules for the duration, then exactly what was
    there before (a real ROS install's modules included)."""
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if _is_launch_module(k)}
    sys.path.insert(0, str(STANDINS))
    importlib.invalidate_caches()
    try:
        for name in STANDIN_MODULES:
            module = importlib.import_module(name)
            assert STANDINS in Path(module.__file__).resolve().parents, module.__file__
        yield sys.modules["launch"]
    finally:
        for k in [k for k in sys.modules if _is_launch_module(k)]:
            del sys.modules[k]
        sys.modules.update(saved)
        sys.path.remove(str(STANDINS))
        importlib.invalidate_caches()


def run_launch(arguments: dict | None = None, *, environment: dict | None = None,
               executable: list | None = None, tmp_dir: Path | None = None,
               ros_namespace: str | None = None) -> SimpleNamespace:
    """Evaluate the launch file like `ros2 launch vode_ros vode.launch.py k:=v ...` with the
    package share at the repository root. Returns plain data (nothing that needs the stand-ins)."""
    with standins() as launch:
        spec = importlib.util.spec_from_file_location("vode_launch_under_test", LAUNCH_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        description = module.generate_launch_description()
        declared = description.declared_arguments()
        unknown = set(arguments or {}) - set(declared)
        assert not unknown, f"not declared by the launch file: {unknown}"
        configs = dict(arguments or {})
        if ros_namespace is not None:
            configs["ros_namespace"] = ros_namespace
        context = launch.LaunchContext(configs, package_shares={"vode_ros": str(REPO)},
                                       environment=environment if environment is not None else {})
        reached = description.visit(context)
        nodes = [a for a in reached if type(a).__name__ == "Node"]
        out = SimpleNamespace(
            defaults={n: (None if d.default_value is None else
                          context.perform_substitution(_Joined(d.default_value)))
                      for n, d in declared.items()},
            descriptions={n: d.description for n, d in declared.items()},
            configurations=dict(context.launch_configurations),
            log=context.log, nodes={}, argv=None)
        for n in nodes:
            info = n.expanded(context)
            info.update(package=n.package, executable=n.executable, output=n.kwargs.get("output"),
                        emulate_tty=n.kwargs.get("emulate_tty"),
                        enabled=n.condition is None or n.condition.evaluate(context),
                        has_condition=n.condition is not None)
            out.nodes[n.executable] = SimpleNamespace(**info)
        if executable is not None:
            node = next(n for n in nodes if n.executable in ("vode_node", "vode_lifecycle_node"))
            out.argv = node.command(context, executable, tmp_dir)
    return out


class _Joined:
    """A DeclareLaunchArgument default (a list of substitutions) as one substitution."""

    def __init__(self, subs):
        self.subs = subs

    def perform(self, context):
        return "".join(s.perform(context) for s in self.subs)


# -- what the launch file builds -------------------------------------------------------------------
def test_every_argument_is_declared_with_its_documented_default():
    r = run_launch()
    assert set(r.defaults) == set(DOCUMENTED_DEFAULTS)
    for name, default in DOCUMENTED_DEFAULTS.items():
        assert r.defaults[name] == default, name
        assert r.descriptions[name], f"argument {name} has no description"


def test_defaults_match_the_schema_and_the_params_file_loads():
    """The extrinsic defaults are written in the launch file too; they must equal config.py's."""
    r = run_launch()
    node = r.nodes["vode_node"]
    params_file, overrides = node.parameters
    assert params_file == REPO / "config" / "vode.yaml" and params_file.is_file()
    cfg = load_config(params_file)
    schema = VodeConfig()
    assert overrides["camera.base_to_camera_xyz"] == schema.camera.base_to_camera_xyz
    assert overrides["camera.base_to_camera_rpy"] == schema.camera.base_to_camera_rpy
    assert cfg.camera.base_to_camera_rpy == schema.camera.base_to_camera_rpy
    assert overrides["use_sim_time"] is False
    assert overrides["ros.use_compressed"] is schema.ros.use_compressed is False
    assert node.namespace == "/" and node.fqn == "/vode_node"
    assert node.remappings == [("image", "/camera/image_raw"),
                               ("camera_info", "/camera/camera_info"),
                               ("image/compressed", "/camera/image_raw/compressed")]
    assert (node.package, node.executable, node.name) == ("vode_ros", "vode_node", "vode_node")
    assert node.output == "screen" and node.emulate_tty is True
    assert not node.has_condition
    assert node.additional_env == {
        "FASTDDS_DEFAULT_PROFILES_FILE": str(REPO / "config" / "fastdds_shm.xml")}
    assert Path(node.additional_env["FASTDDS_DEFAULT_PROFILES_FILE"]).is_file()


def test_arguments_reach_the_node_as_typed_parameters_remappings_and_namespace():
    r = run_launch({**ROBOT1, "use_sim_time": "True", "use_compressed": "true",
                    "camera_z": "2", "camera_pitch": "0.25"})
    node = r.nodes["vode_node"]
    assert node.namespace == "/robot1" and node.fqn == "/robot1/vode_node"
    assert node.remappings == [("image", "/cam/img"), ("camera_info", "/cam/info"),
                               ("image/compressed", "/cam/img/compressed")]
    overrides = node.parameters[1]
    xyz, rpy = overrides["camera.base_to_camera_xyz"], overrides["camera.base_to_camera_rpy"]
    assert xyz == [0.1, 0.0, 2.0] and rpy == [-HALF_PI, 0.25, -HALF_PI]
    assert all(type(v) is float for v in xyz + rpy), "double arrays, not ints or strings"
    assert overrides["use_sim_time"] is True and overrides["ros.use_compressed"] is True


def test_namespace_nests_under_an_enclosing_push_ros_namespace():
    r = run_launch({"namespace": "robot1"}, ros_namespace="/fleet")
    assert r.nodes["vode_node"].fqn == "/fleet/robot1/vode_node"
    assert ("/odom", "/fleet/robot1/odom") in r.nodes["rviz2"].remappings


@pytest.mark.parametrize("value, enabled", [("false", False), ("False", False), ("0", False),
                                            ("true", True), ("True", True), ("1", True)])
def test_rviz_starts_only_with_use_rviz(value, enabled):
    rviz = run_launch({"use_rviz": value}).nodes["rviz2"]
    assert rviz.has_condition and rviz.enabled is enabled
    assert (rviz.package, rviz.executable) == ("rviz2", "rviz2")
    assert rviz.arguments == ["-d", str(REPO / "config" / "vode.rviz")]
    assert rviz.remappings == []       # root namespace, default camera: the config's own topics


def test_rviz_follows_the_namespace_and_the_image_topic():
    rviz = run_launch({**ROBOT1, "use_rviz": "true", "use_sim_time": "true"}).nodes["rviz2"]
    assert rviz.enabled
    assert sorted(rviz.remappings) == [("/camera/image_raw", "/cam/img"),
                                       ("/depth/image", "/robot1/depth/image"),
                                       ("/loop_closures", "/robot1/loop_closures"),
                                       ("/map_path", "/robot1/map_path"),
                                       ("/odom", "/robot1/odom"), ("/path", "/robot1/path")]
    assert rviz.parameters == [{"use_sim_time": True}]


@pytest.mark.parametrize("arguments, expect", [({"camera_x": "ten"}, "camera_x"),
                                               ({"camera_yaw": "nan"}, "camera_yaw"),
                                               ({"use_sim_time": "yes"}, "use_sim_time")])
def test_bad_arguments_are_refused_naming_the_argument(arguments, expect):
    with pytest.raises(ValueError, match=expect):
        run_launch(arguments)


def test_a_fast_dds_profile_the_user_set_is_kept():
    r = run_launch(environment={"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/my_profile.xml"})
    assert r.nodes["vode_node"].additional_env == {}
    r = run_launch(environment={"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/my_profile.xml",
                                "ROS_DISTRO": "jazzy"})
    assert r.nodes["vode_node"].additional_env == {}


def test_on_fast_dds_2_releases_the_profile_is_also_set_under_its_older_name():
    profile = str(REPO / "config" / "fastdds_shm.xml")
    r = run_launch(environment={"ROS_DISTRO": "jazzy"})
    assert r.nodes["vode_node"].additional_env == {"FASTDDS_DEFAULT_PROFILES_FILE": profile,
                                                   "FASTRTPS_DEFAULT_PROFILES_FILE": profile}


@pytest.mark.parametrize("value, executable", [("false", "vode_node"),
                                               ("true", "vode_lifecycle_node")])
def test_managed_starts_the_lifecycle_node_with_the_same_settings(value, executable):
    r = run_launch({**ROBOT1, "managed": value})
    (node,) = [n for name, n in r.nodes.items() if name != "rviz2"]
    assert (node.package, node.executable, node.name) == ("vode_ros", executable, "vode_node")
    assert node.fqn == "/robot1/vode_node"
    assert node.remappings == [("image", "/cam/img"), ("camera_info", "/cam/info"),
                               ("image/compressed", "/cam/img/compressed")]
    assert node.parameters[1]["camera.base_to_camera_xyz"] == [0.1, 0.0, 0.0]


def test_managed_refuses_a_value_that_is_not_a_boolean():
    with pytest.raises(ValueError, match="managed"):
        run_launch({"managed": "maybe"})


@pytest.mark.parametrize("key, warns", [("vode_node", True), ("/**/vode_node", False),
                                        ("/**", False), ("/robot1/vode_node", False)])
def test_warns_when_the_params_file_cannot_reach_a_namespaced_node(tmp_path, key, warns):
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({key: {"ros__parameters": {"ros": {"odom_frame": "o"}}}}))
    r = run_launch({"namespace": "robot1", "params_file": str(params)})
    assert any("will NOT reach /robot1/vode_node" in m for m in r.log) is warns, r.log
    assert not run_launch({"params_file": str(params)}).log   # root namespace: always applies


def test_loads_with_the_real_launch_packages_when_installed():
    """Under a ROS install (colcon test) the same file must load with the real launch_ros."""
    pytest.importorskip("launch_ros", reason="launch_ros is not installed (not on PyPI)")
    spec = importlib.util.spec_from_file_location("vode_launch_real", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert {a.name for a in description.get_launch_arguments()} == set(DOCUMENTED_DEFAULTS)


def test_standins_never_outlive_the_evaluation():
    run_launch()
    assert str(STANDINS) not in sys.path
    for name, module in list(sys.modules.items()):
        if _is_launch_module(name):
            assert STANDINS not in Path(getattr(module, "__file__", "") or "/").parents, name


# -- the RViz configuration ------------------------------------------------------------------------
RVIZ_DEFAULT_PLUGINS = {"Grid", "TF", "Odometry", "Path", "Image", "Camera", "MarkerArray",
                        "Marker", "Axes", "Pose", "PoseArray", "PointCloud2", "DepthCloud"}


def _displays(manager):
    for d in manager["Displays"]:
        yield d
        if d.get("Class") == "rviz_common/Group":
            yield from _displays(d)


def test_rviz_config_shows_the_node_outputs_in_odom():
    cfg = yaml.safe_load((REPO / "config" / "vode.rviz").read_text())
    manager = cfg["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "odom"
    displays = list(_displays(manager))
    for d in displays:
        owner, _, plugin = d["Class"].partition("/")
        assert owner == "rviz_default_plugins" and plugin in RVIZ_DEFAULT_PLUGINS, d["Class"]
        assert d["Name"] and d["Enabled"] is True
    by_topic = {d["Topic"]["Value"]: d for d in displays if "Topic" in d}
    assert {"/odom", "/path", "/depth/image", "/camera/image_raw"} <= set(by_topic)
    assert by_topic["/odom"]["Class"] == "rviz_default_plugins/Odometry"
    assert by_topic["/odom"]["Covariance"]["Value"] is True
    assert by_topic["/path"]["Class"] == "rviz_default_plugins/Path"
    assert by_topic["/map_path"]["Class"] == "rviz_default_plugins/Path"
    assert by_topic["/loop_closures"]["Class"] == "rviz_default_plugins/MarkerArray"
    for topic in ("/camera/image_raw", "/depth/image"):
        d = by_topic[topic]
        assert d["Class"] == "rviz_default_plugins/Image"
        assert d["Topic"]["Reliability Policy"] == "Best Effort"   # matches SensorDataQoS too
        assert {"Depth", "History Policy", "Durability Policy"} <= set(d["Topic"])
    assert by_topic["/depth/image"]["Normalize Range"] is True
    tf = next(d for d in displays if d["Class"] == "rviz_default_plugins/TF")
    assert {"odom", "base_link", "camera_optical_frame"} <= set(tf["Frames"])
    assert manager["Views"]["Current"]["Class"] == "rviz_default_plugins/Orbit"
    assert {"Panels", "Window Geometry"} <= set(cfg)


# -- the node, started from the launch file's command line -----------------------------------------
_SHIPPED_KEYS = set(yaml.safe_load((REPO / "config" / "vode.yaml").read_text()) or {})
_BARE_KEY = "vode_node" in _SHIPPED_KEYS and not _SHIPPED_KEYS & {"/**", "/**/vode_node"}


def _node_executable() -> list:
    """What ExecutableInPackage would find: the installed console script, else the module."""
    for candidate in (Path(sys.prefix) / "bin" / "vode_node", shutil.which("vode_node")):
        if candidate and Path(candidate).is_file():
            return [str(candidate)]
    return [sys.executable, "-m", "vode_ros.ros.node"]


def _wait(predicate, timeout: float, spin=None) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        if spin is not None:
            spin()
        else:
            time.sleep(0.05)
    return predicate()


def _quat_matrix(q) -> np.ndarray:
    x, y, z, w = q.x, q.y, q.z, q.w
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """vode_node started with the argv the launch file yields for the robot1 arguments, and an
    rclpy probe on the same (unique) domain. The params file is the shipped one with
    ros.path_max_poses changed, so the test can see whether it reached the node."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    tmp = tmp_path_factory.mktemp("launch")
    shipped = yaml.safe_load((REPO / "config" / "vode.yaml").read_text())
    section = next(v for v in shipped.values() if isinstance(v, dict) and "ros__parameters" in v)
    section["ros__parameters"]["ros"]["path_max_poses"] = 1234
    params_file = tmp / "vode.yaml"
    params_file.write_text(yaml.safe_dump(shipped))

    r = run_launch({**ROBOT1, "params_file": str(params_file)}, executable=_node_executable(),
                   tmp_dir=tmp)
    env_prefix = ["env"] + [f"{k}={v}" for k, v in r.nodes["vode_node"].additional_env.items()]
    domain = unique_domain_id()
    node = NodeProcess(domain, tmp / "node.log", command=env_prefix + r.argv)

    with pytest.MonkeyPatch.context() as mp:
        for k, v in ros_environment(domain).items():
            if k.startswith(("ROS_", "FASTDDS_")):
                mp.setenv(k, v)
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain)
        probe = rclpy.create_node("launch_test_probe", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(probe)
        state = SimpleNamespace(node=node, probe=probe, executor=executor, argv=r.argv,
                                spin=lambda: executor.spin_once(timeout_sec=0.05))
        try:
            assert _wait(lambda: ("vode_node", "/robot1") in probe.get_node_names_and_namespaces()
                         or not node.alive(), 30), f"node never appeared; log:\n{node.log()}"
            assert node.alive(), f"node exited with {node.proc.returncode}; log:\n{node.log()}"
            yield state
        finally:
            node.stop()
            executor.shutdown()
            probe.destroy_node()
            rclpy.try_shutdown(context=context)


def test_launch_command_line_is_what_launch_ros_builds(launched):
    argv = launched.argv
    i = argv.index("--ros-args")
    assert argv[i + 1:i + 5] == ["-r", "__node:=vode_node", "-r", "__ns:=/robot1"]
    assert argv.count("--params-file") == 2
    assert argv[-6:] == ["-r", "image:=/cam/img", "-r", "camera_info:=/cam/info",
                         "-r", "image/compressed:=/cam/img/compressed"]


def test_node_is_in_the_graph_with_the_launch_topics_and_service(launched):
    probe, node = launched.probe, launched.node

    def names(getter):
        return {n for n, _ in getter("vode_node", "/robot1")}

    expected_pubs = {"/robot1/odom", "/robot1/depth/image", "/robot1/depth/camera_info",
                     "/robot1/path", "/tf", "/tf_static", "/diagnostics"}
    assert _wait(lambda: expected_pubs <= names(probe.get_publisher_names_and_types_by_node)
                 and {"/cam/img", "/cam/info"} <= names(
                     probe.get_subscriber_names_and_types_by_node)
                 and "/robot1/vode_node/reset" in names(probe.get_service_names_and_types_by_node),
                 15), (f"publishers {names(probe.get_publisher_names_and_types_by_node)}, "
                       f"subscribers {names(probe.get_subscriber_names_and_types_by_node)}, "
                       f"services {names(probe.get_service_names_and_types_by_node)}; "
                       f"log:\n{node.log()}")
    subs = dict(probe.get_subscriber_names_and_types_by_node("vode_node", "/robot1"))
    assert subs["/cam/img"] == ["sensor_msgs/msg/Image"]
    assert subs["/cam/info"] == ["sensor_msgs/msg/CameraInfo"]
    assert probe.count_subscribers("/cam/img") >= 1
    # the subscriptions exist a moment before the node logs that it is ready (its last step)
    assert _wait(lambda: "vode_node ready" in node.log(), 15), node.log()


def test_static_tf_carries_the_launch_extrinsic(launched):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    got = []
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    sub = launched.probe.create_subscription(TFMessage, "/tf_static", got.append, qos)
    try:
        assert _wait(lambda: got, 15, launched.spin), f"no /tf_static; log:\n{launched.node.log()}"
    finally:
        launched.probe.destroy_subscription(sub)
    (t,) = got[0].transforms
    assert (t.header.frame_id, t.child_frame_id) == ("base_link", "camera_optical_frame")
    tr = t.transform.translation
    assert np.allclose([tr.x, tr.y, tr.z], [0.1, 0.0, 0.0])
    R = _quat_matrix(t.transform.rotation)    # REP-103: optical z forward, x right, y down
    assert np.allclose(R @ [0, 0, 1], [1, 0, 0], atol=1e-9)
    assert np.allclose(R @ [1, 0, 0], [0, -1, 0], atol=1e-9)
    assert np.allclose(R @ [0, 1, 0], [0, 0, -1], atol=1e-9)


def _get_parameters(launched, names):
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    client = launched.probe.create_client(GetParameters, "/robot1/vode_node/get_parameters")
    try:
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(GetParameters.Request(names=names))
        assert _wait(future.done, 10, launched.spin)
        return dict(zip(names, (parameter_value_to_python(v) for v in future.result().values), strict=True))
    finally:
        launched.probe.destroy_client(client)


def test_launch_parameters_reach_the_node(launched):
    values = _get_parameters(launched, ["camera.base_to_camera_xyz", "camera.base_to_camera_rpy",
                                        "use_sim_time", "ros.use_compressed"])
    assert list(values["camera.base_to_camera_xyz"]) == [0.1, 0.0, 0.0]
    assert list(values["camera.base_to_camera_rpy"]) == [-HALF_PI, 0.0, -HALF_PI]
    assert values["use_sim_time"] is False and values["ros.use_compressed"] is False


@pytest.mark.xfail(_BARE_KEY, strict=True,
                   reason="config/vode.yaml keys its parameters 'vode_node:', which ROS applies "
                          "only to /vode_node, so with namespace:=robot1 the params file is "
                          "silently ignored; vode config should write '/**/vode_node:' (and "
                          "load_config accept it). The launch file logs a warning meanwhile.")
def test_params_file_reaches_the_namespaced_node(launched):
    assert _get_parameters(launched, ["ros.path_max_poses"])["ros.path_max_poses"] == 1234


def test_node_stops_cleanly_on_sigint(launched):      # last: it stops the shared node
    assert launched.node.alive(), launched.node.log()
    assert launched.node.stop() == 0, launched.node.log()
    assert "Traceback" not in launched.node.log()
