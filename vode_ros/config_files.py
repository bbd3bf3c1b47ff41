"""The configuration on disk: a YAML file (node parameter file or ``{section: {key: value}}``)
plus ``--set`` overrides loaded into the schema, and the schema written out as the node's
parameter file and as docs/parameters.md."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import yaml

from vode_ros.config import NODE_NAME, VodeConfig
from vode_ros.config_values import split_key
from vode_ros.errors import ConfigError


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> VodeConfig:
    """Read a YAML file into the schema, then apply ``section.key=value`` overrides.

    The file may be a node parameter file (``vode_node: ros__parameters: {...}``, nested or with
    dotted keys) or a plain mapping ``{section: {key: value}}``.
    """
    cfg = VodeConfig()
    if path is not None:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"configuration file '{path}' does not exist") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"configuration file '{path}' is not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"configuration file '{path}' must hold a mapping, got "
                              f"{type(data).__name__}")
        for node in (f"/**/{NODE_NAME}", NODE_NAME, f"/{NODE_NAME}", "/**"):
            if isinstance(data.get(node), dict) and "ros__parameters" in data[node]:
                data = data[node]["ros__parameters"]
                break
        for name, value in _flatten(data):
            cfg.set(name, value)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"an override looks like 'section.key=value', got '{item}'")
        name, value = item.split("=", 1)
        cfg.set(name.strip(), value.strip())
    return cfg


def _flatten(data: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            yield from _flatten(value, name)
        else:
            yield name, value


def dump_parameter_yaml(cfg: VodeConfig | None = None) -> str:
    """The node's parameter file, every parameter with its description as a comment."""
    cfg = cfg or VodeConfig()
    lines = ["# vode_node parameters. Generated from vode_ros/config.py by `vode config`;",
             "# edit values freely, the descriptions come from the schema.",
             "# The key /**/vode_node applies to the node in any namespace (a bare 'vode_node:'",
             "# would be skipped by a namespaced node).",
             f"/**/{NODE_NAME}:", "  ros__parameters:"]
    section = None
    for name, value, meta in cfg.parameters():
        sec, key = split_key(name)
        if sec != section:
            lines.append(f"    {sec}:")
            section = sec
        rng = ""
        if meta.get("low") is not None:
            rng = f" Range [{meta['low']}, {meta['high']}]."
        lines.append(f"      # {meta['description']}{rng}")
        lines.append(f"      {key}: {yaml.safe_dump(value, default_flow_style=True).strip()}"
                     .replace("\n...", ""))
    return "\n".join(lines) + "\n"


def parameter_table_markdown(cfg: VodeConfig | None = None) -> str:
    """The parameter table (name, default, range, description), generated from the schema."""
    cfg = cfg or VodeConfig()
    rows = ["| parameter | default | range | description |", "|---|---|---|---|"]
    for name, value, meta in cfg.parameters():
        rng = f"[{meta['low']}, {meta['high']}]" if meta.get("low") is not None else ""
        shown = yaml.safe_dump(value, default_flow_style=True).strip().replace("\n...", "")
        rows.append(f"| `{name}` | `{shown}` | {rng} | {meta['description']} |")
    return "\n".join(rows) + "\n"


def parameter_page_markdown(cfg: VodeConfig | None = None) -> str:
    """docs/parameters.md: a title, one line on where the parameters apply, and the table."""
    return ("# Parameters\n\n"
            "Every parameter of `vode_node` and of the `vode` command (`--config FILE`, "
            "`--set section.key=value`), generated from `vode_ros/config.py` by "
            "`vode config --markdown > docs/parameters.md`.\n\n"
            + parameter_table_markdown(cfg))
