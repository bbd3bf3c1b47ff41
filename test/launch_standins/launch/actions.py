"""Stand-in for launch.actions: actions record their arguments; `execute` mirrors the real ones."""
import collections.abc

from .substitutions import normalize_to_list_of_substitutions, perform_substitutions


class Action:
    def __init__(self, *, condition=None):
        self.condition = condition

    def execute(self, context):
        return None


class DeclareLaunchArgument(Action):
    def __init__(self, name, *, default_value=None, description=None, choices=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(name, str):
            raise TypeError('DeclareLaunchArgument name must be a str')
        self.name = name
        self.default_value = (None if default_value is None
                              else normalize_to_list_of_substitutions(default_value))
        self.description = description
        self.choices = choices

    def execute(self, context):
        if self.name not in context.launch_configurations:
            if self.default_value is None:
                raise RuntimeError(f"required launch argument '{self.name}' was not provided")
            context.launch_configurations[self.name] = perform_substitutions(
                context, self.default_value)
        value = context.launch_configurations[self.name]
        if self.choices is not None and value not in self.choices:
            raise RuntimeError(f"argument '{self.name}': '{value}' not in {self.choices}")
        return None


class OpaqueFunction(Action):
    def __init__(self, *, function, args=None, kwargs=None, **left_over):
        super().__init__(**left_over)
        if not callable(function):
            raise TypeError("OpaqueFunction expected a callable for 'function'")
        if args is not None and not isinstance(args, collections.abc.Iterable):
            raise TypeError('OpaqueFunction args must be iterable')
        self.function = function
        self.args = list(args or [])
        self.kwargs = dict(kwargs or {})

    def execute(self, context):
        return self.function(context, *self.args, **self.kwargs)


class SetEnvironmentVariable(Action):
    def __init__(self, name, value, **kwargs):
        super().__init__(**kwargs)
        self.name = normalize_to_list_of_substitutions(name)
        self.value = normalize_to_list_of_substitutions(value)

    def execute(self, context):
        context.environment[perform_substitutions(context, self.name)] = \
            perform_substitutions(context, self.value)


class LogInfo(Action):
    def __init__(self, *, msg, **kwargs):
        super().__init__(**kwargs)
        self.msg = normalize_to_list_of_substitutions(msg)

    def execute(self, context):
        context.log.append(perform_substitutions(context, self.msg))


class GroupAction(Action):
    def __init__(self, actions, *, scoped=True, forwarding=True, launch_configurations=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.actions = list(actions)

    def execute(self, context):
        return list(self.actions)
