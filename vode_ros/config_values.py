"""Configuration keys and values: ``section.key`` names, and a value coerced to a field's type
and checked against its range and choices (the rules every override of the schema in
``vode_ros/config.py`` goes through)."""
from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any, Mapping

import yaml

from vode_ros.errors import ConfigError


def param(default, description: str, *, low=None, high=None, choices=None, node_only=False):
    """A parameter of the schema: a dataclass field with its default and what the node declares
    about it (description, range, choices, whether only the node has it)."""
    meta = {"description": description, "low": low, "high": high, "choices": choices,
            "node_only": node_only}
    if isinstance(default, list):
        frozen = tuple(default)
        return field(default_factory=lambda: list(frozen), metadata=meta)
    return field(default=default, metadata=meta)


def field_names(obj) -> set:
    return {f.name for f in dataclasses.fields(obj)}


def split_key(name: str) -> tuple[str, str]:
    if name.count(".") != 1:
        raise ConfigError(f"configuration keys look like 'section.key', got '{name}'")
    section, key = name.split(".")
    return section, key


def coerce(name: str, value: Any, current: Any, meta: Mapping[str, Any]) -> Any:
    if isinstance(value, str) and not isinstance(current, str):
        value = yaml.safe_load(value)
    out: Any
    try:
        if isinstance(current, bool):
            if not isinstance(value, bool):
                raise ValueError
            out = value
        elif isinstance(current, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            out = int(value)
        elif isinstance(current, float):
            if isinstance(value, bool):
                raise ValueError
            out = float(value)
        elif isinstance(current, str):
            out = str(value)
        elif isinstance(current, list):
            if not isinstance(value, (list, tuple)):
                raise ValueError
            if current and isinstance(current[0], float):
                if len(value) != len(current):
                    raise ValueError
                out = [float(v) for v in value]
            else:
                out = [str(v) for v in value]
        else:  # pragma: no cover - schema only uses the types above
            out = value
    except (TypeError, ValueError):
        raise ConfigError(f"'{name}' expects a value like {current!r} "
                          f"({type(current).__name__}), got {value!r}") from None
    choices = meta.get("choices")
    if choices and out not in choices:
        raise ConfigError(f"'{name}' must be one of {', '.join(map(repr, choices))}, got "
                          f"{out!r}")
    low, high = meta.get("low"), meta.get("high")
    if low is not None and out < low or high is not None and out > high:
        raise ConfigError(f"'{name}' must lie in [{low}, {high}], got {out!r}")
    return out
