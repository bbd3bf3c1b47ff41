"""Stand-in for launch_ros.actions.Node: records its arguments and, given a context, produces the
command line launch_ros would run (launch_ros/actions/node.py: name, namespace, parameter files,
dictionaries written to a parameter file keyed by the node's full name, remappings)."""
import collections.abc
import os
import pathlib
import tempfile

import yaml
from launch.actions import Action
from launch.substitutions import (
    Substitution,
    perform_substitutions,
)

# launch.actions.ExecuteProcess / ExecuteLocal keywords a Node passes on.
EXECUTE_PROCESS_KWARGS = {
    'condition', 'cwd', 'env', 'additional_env', 'shell', 'sigterm_timeout', 'sigkill_timeout',
    'emulate_tty', 'output', 'output_format', 'log_cmd', 'cached_output', 'on_exit', 'respawn',
    'respawn_delay', 'respawn_max_retries', 'prefix', 'prefix_filter',
}


def _check_parameter_value(name, value):
    """launch_ros's normalize_parameter_dict rules, strictly (a mixed list is an error here)."""
    if isinstance(value, collections.abc.Mapping):
        for k, v in value.items():
            _check_parameter_value(f'{name}.{k}', v)
    elif isinstance(value, (str, bool, int, float, bytes, Substitution)):
        pass
    elif isinstance(value, collections.abc.Sequence):
        kinds = {type(v) for v in value}
        if not kinds <= {str, bool, int, float} or len(kinds) > 1:
            raise TypeError(f"parameter '{name}': list elements must share one of str, bool, "
                            f"int, float; got {sorted(k.__name__ for k in kinds)}")
    else:
        raise TypeError(f"parameter '{name}': unexpected type {type(value).__name__}")


def _evaluate(context, value):
    if isinstance(value, Substitution) or (isinstance(value, list) and value
                                           and all(isinstance(v, Substitution) for v in value)):
        return yaml.safe_load(perform_substitutions(context, value))
    if isinstance(value, collections.abc.Mapping):
        return {k: _evaluate(context, v) for k, v in value.items()}
    if isinstance(value, tuple):
        return list(value)
    return value


def _flatten(params, prefix=''):
    out = {}
    for k, v in params.items():
        name = f'{prefix}.{k}' if prefix else k
        if isinstance(v, collections.abc.Mapping):
            out.update(_flatten(v, name))
        else:
            out[name] = v
    return out


class Node(Action):
    def __init__(self, *, executable, package=None, name=None, namespace=None, exec_name=None,
                 parameters=None, remappings=None, ros_arguments=None, arguments=None, **kwargs):
        unknown = set(kwargs) - EXECUTE_PROCESS_KWARGS
        if unknown:
            raise TypeError(f'Node() got unexpected keyword arguments {sorted(unknown)}')
        super().__init__(condition=kwargs.pop('condition', None))
        if parameters is not None:
            if isinstance(parameters, str) or not isinstance(parameters, list):
                raise TypeError("Node 'parameters' must be a list")
            for p in parameters:
                if isinstance(p, collections.abc.Mapping):
                    for k, v in p.items():
                        _check_parameter_value(k, v)
                elif not isinstance(p, (str, pathlib.Path, Substitution, list)):
                    raise TypeError(f'a parameters entry must be a file or a dict, got {p!r}')
        self.package = package
        self.executable = executable
        self.name = name
        self.namespace = namespace
        self.exec_name = exec_name
        self.parameters = list(parameters or [])
        self.remappings = list(remappings or [])
        self.ros_arguments = list(ros_arguments or [])
        self.arguments = list(arguments or [])
        self.kwargs = kwargs

    # -- what launch_ros computes at execution ----------------------------------------------------
    def expanded(self, context):
        """Evaluated fields: name, namespace, fqn, parameter files and dicts, remappings, env."""
        def text(v):
            return None if v is None else perform_substitutions(context, v)

        name = text(self.name)
        ns = text(self.namespace)
        base = context.launch_configurations.get('ros_namespace')
        if ns is not None or base is not None:       # launch_ros's prefix_namespace rules
            if ns is None:
                ns = base
            elif base and not ns.startswith('/'):
                ns = base.rstrip('/') + '/' + ns
            if ns != '/':
                ns = ns.rstrip('/')
            ns = ns if ns.startswith('/') else '/' + ns
        fqn = None
        if name is not None and ns is not None:
            fqn = (ns.rstrip('/') + '/' + name)
        params = []
        for p in self.parameters:
            if isinstance(p, collections.abc.Mapping):
                params.append(_flatten(_evaluate(context, dict(p))))
            else:
                params.append(pathlib.Path(perform_substitutions(
                    context, str(p) if isinstance(p, pathlib.Path) else p)))
        remaps = [(text(a), text(b)) for a, b in self.remappings]
        env = {text(k): text(v) for k, v in (self.kwargs.get('additional_env') or {}).items()}
        return {'name': name, 'namespace': ns, 'fqn': fqn, 'parameters': params,
                'remappings': remaps, 'additional_env': env,
                'arguments': [text(a) for a in self.arguments]}

    def command(self, context, executable, tmp_dir):
        """argv after `executable` as launch_ros builds it; dicts go to parameter files in
        tmp_dir keyed by the full node name (or /** when the name is not fully given)."""
        e = self.expanded(context)
        argv = list(executable) + e['arguments']
        if self.ros_arguments:
            argv += ['--ros-args'] + [perform_substitutions(context, a) for a in self.ros_arguments]
        argv += ['--ros-args']
        if e['name'] is not None:
            argv += ['-r', f"__node:={e['name']}"]
        if e['namespace'] is not None:
            argv += ['-r', f"__ns:={e['namespace']}"]
        for p in e['parameters']:
            if isinstance(p, dict):
                fd, path = tempfile.mkstemp(prefix='launch_params_', suffix='.yaml', dir=tmp_dir)
                with os.fdopen(fd, 'w') as f:
                    yaml.dump({e['fqn'] or '/**': {'ros__parameters': p}}, f,
                              default_flow_style=False)
                argv += ['--params-file', path]
            elif p.is_file():
                argv += ['--params-file', str(p)]
            else:
                context.log.append(f'Parameter file path is not a file: {p}')  # launch_ros skips
        for a, b in e['remappings']:
            argv += ['-r', f'{a}:={b}']
        return argv
