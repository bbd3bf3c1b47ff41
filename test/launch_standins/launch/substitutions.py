"""Stand-in for launch.substitutions: substitutions that evaluate against a LaunchContext."""
import math
import os


class SubstitutionFailure(RuntimeError):
    pass


class Substitution:
    def perform(self, context) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


def normalize_to_list_of_substitutions(value):
    """str -> [TextSubstitution]; Substitution -> [it]; iterable -> each item normalised."""
    if isinstance(value, str):
        return [TextSubstitution(text=value)]
    if isinstance(value, Substitution):
        return [value]
    out = []
    for item in value:
        if isinstance(item, str):
            out.append(TextSubstitution(text=item))
        elif isinstance(item, Substitution):
            out.append(item)
        else:
            raise TypeError(f'expected str or Substitution, got {type(item).__name__}: {item!r}')
    return out


def perform_substitutions(context, substitutions) -> str:
    return ''.join(s.perform(context) for s in normalize_to_list_of_substitutions(substitutions))


class TextSubstitution(Substitution):
    def __init__(self, *, text):
        if not isinstance(text, str):
            raise TypeError(f'TextSubstitution expects str, got {type(text).__name__}')
        self.text = text

    def perform(self, context) -> str:
        return self.text

    def __repr__(self):
        return f'TextSubstitution({self.text!r})'


class LaunchConfiguration(Substitution):
    def __init__(self, variable_name, *, default=None):
        self.variable_name = normalize_to_list_of_substitutions(variable_name)
        self.default = None if default is None else normalize_to_list_of_substitutions(default)

    def perform(self, context) -> str:
        name = perform_substitutions(context, self.variable_name)
        if name in context.launch_configurations:
            return context.launch_configurations[name]
        if self.default is not None:
            return perform_substitutions(context, self.default)
        raise SubstitutionFailure(f"launch configuration '{name}' does not exist")

    def __repr__(self):
        return f'LaunchConfiguration({self.variable_name!r})'


class PathJoinSubstitution(Substitution):
    def __init__(self, substitutions):
        self.substitutions = [normalize_to_list_of_substitutions(s) for s in substitutions]

    def perform(self, context) -> str:
        return os.path.join(*(perform_substitutions(context, s) for s in self.substitutions))


class PythonExpression(Substitution):
    def __init__(self, expression, python_modules=('math',)):
        self.expression = normalize_to_list_of_substitutions(expression)
        self.python_modules = list(python_modules)

    def perform(self, context) -> str:
        scope = {'math': math}
        for name in self.python_modules:
            scope[name] = __import__(name)
        return str(eval(perform_substitutions(context, self.expression), scope))  # noqa: S307


class EnvironmentVariable(Substitution):
    def __init__(self, name, *, default_value=None):
        self.name = normalize_to_list_of_substitutions(name)
        self.default_value = default_value

    def perform(self, context) -> str:
        name = perform_substitutions(context, self.name)
        if name in context.environment:
            return context.environment[name]
        if self.default_value is None:
            raise SubstitutionFailure(f"environment variable '{name}' does not exist")
        return perform_substitutions(context, self.default_value)
