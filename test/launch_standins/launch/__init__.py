"""Test stand-in for ROS 2's `launch` package (see ../README.md); never on sys.path for real."""
import os

from . import actions, conditions, substitutions  # noqa: F401
from .actions import Action


class LaunchContext:
    """What `ros2 launch` hands to actions; the constructor arguments are the stand-in's own.

    package_shares: {package: share directory} used by launch_ros's FindPackageShare stand-in.
    """

    def __init__(self, launch_configurations=None, *, package_shares=None, environment=None):
        self.launch_configurations = dict(launch_configurations or {})
        self.package_shares = dict(package_shares or {})
        self.environment = dict(os.environ if environment is None else environment)
        self.log = []          # messages of LogInfo actions

    def perform_substitution(self, substitution) -> str:
        return substitution.perform(self)


class LaunchDescription:
    def __init__(self, initial_entities=None, *, deprecated_reason=None):
        self.entities = list(initial_entities or [])

    def add_action(self, action):
        self.entities.append(action)

    add_entity = add_action

    def declared_arguments(self):
        """{name: DeclareLaunchArgument} at the top level, in order."""
        return {e.name: e for e in self.entities if isinstance(e, actions.DeclareLaunchArgument)}

    def visit(self, context):
        """Visit like `ros2 launch`: conditions decide what executes, returned entities are
        visited in turn. Returns every action reached (executed or not), in order."""
        reached = []

        def visit(entity):
            reached.append(entity)
            if isinstance(entity, LaunchDescription):
                for sub in entity.entities:
                    visit(sub)
                return
            if entity.condition is not None and not entity.condition.evaluate(context):
                return
            for sub in entity.execute(context) or []:
                visit(sub)

        for entity in self.entities:
            visit(entity)
        return reached


__all__ = ['Action', 'LaunchContext', 'LaunchDescription', 'actions', 'conditions',
           'substitutions']
