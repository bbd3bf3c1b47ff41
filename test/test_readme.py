"""README.md is a user's manual that stays true to the code.

It stays short (at most 20 kB); every `vode` command and option, `make` target, launch argument,
topic, service and parameter it names exists; its launch-argument and topic tables list all of
them; its links reach tracked files; it points nowhere outside the repository.
"""
from __future__ import annotations

import ast
import re

from test_docs import (
    REPO,
    broken_links,
    code_snippets,
    command_problems,
    tracked_files,
    vode_commands,
)
from vode_ros.config import VodeConfig

README = REPO / "README.md"
MAX_BYTES = 20 * 1024


def readme() -> str:
    return README.read_text(encoding="utf-8")


# -- size and scope ------------------------------------------------------------------------------
def test_readme_is_a_short_manual():
    size = len(README.read_bytes())
    assert size <= MAX_BYTES, f"README.md is {size} bytes; keep it under {MAX_BYTES} " \
        "(long figures belong in docs/results.md, recipes in docs/training.md)"


def test_readme_points_only_into_the_repository():
    text = readme()
    assert "../shared/DESIGN" not in text, "a user's checkout has no ../shared: link docs/design.md"
    assert "explainability" not in text.lower(), "the trainer has no explainability mask"
    tracked = set(tracked_files())
    bad = broken_links("README.md", tracked)
    assert not bad, "broken links:\n" + "\n".join(bad)


# -- the vode command ----------------------------------------------------------------------------
def test_readme_vode_commands_and_options_exist():
    commands = vode_commands(readme())
    assert len(commands) >= 10, "README names the vode commands"
    problems = command_problems(commands)
    assert not problems, "\n".join(problems)


def test_readme_make_targets_exist():
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
    named = {t for s in code_snippets(readme()) for t in re.findall(r"\bmake\s+([\w-]+)", s)}
    assert {"demo", "test"} <= named
    missing = sorted(named - targets)
    assert not missing, f"README names make targets the Makefile lacks: {missing}"


# -- launch arguments ----------------------------------------------------------------------------
def launch_arguments() -> set[str]:
    """Every argument launch/vode.launch.py declares (its ARGUMENTS table and the extra ones)."""
    tree = ast.parse((REPO / "launch" / "vode.launch.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "ARGUMENTS"
                                                for t in node.targets):
            names |= {elt.elts[0].value for elt in node.value.elts}
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DeclareLaunchArgument" \
                and node.args and isinstance(node.args[0], ast.Constant):
            names.add(node.args[0].value)
    return names


def table_first_column(text: str, header: str) -> set[str]:
    """The backticked names in the first column of the table whose header starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    names = set()
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        names |= set(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return names


def test_readme_launch_arguments_are_the_launch_files():
    text = readme()
    declared = launch_arguments()
    documented = table_first_column(text, "| launch argument |")
    assert documented == declared, (
        f"missing from README's table: {sorted(declared - documented)}; "
        f"not declared by the launch file: {sorted(documented - declared)}")
    used = {n for s in code_snippets(text) if "vode.launch.py" in s
            for n in re.findall(r"\b(\w+):=", s)}
    assert used and used <= declared, f"README uses unknown launch arguments: {used - declared}"


# -- topics, services, parameters ----------------------------------------------------------------
def node_interfaces() -> set[str]:
    """Topic and service names vode_node creates (string literals in its create_* calls)."""
    source = (REPO / "vode_ros" / "ros" / "node.py").read_text()
    return set(re.findall(r"create_(?:publisher|subscription|service)\(\s*\w+,\s*\"([^\"]+)\"",
                          source))


def test_readme_topics_and_services_are_the_nodes():
    rows = re.findall(r"^\| (?:sub|pub|srv) \| ([^|]+) \|", readme(), re.M)
    named = {n for row in rows for n in re.findall(r"`([^`]+)`", row)}
    created = node_interfaces()
    assert named == created, (f"in README but not created by the node: {sorted(named - created)}; "
                              f"created but not in README: {sorted(created - named)}")


def test_readme_parameters_exist():
    sections = {name.split(".")[0] for name, _, _ in VodeConfig().parameters()}
    known = {name for name, _, _ in VodeConfig().parameters()}
    dotted = re.compile(r"(?<![\w/.-])([a-z_]+\.[a-z_]+)(?![\w.])")    # not in paths or files
    named = {m for s in code_snippets(readme()) for m in dotted.findall(s)
             if m.split(".")[0] in sections}
    assert len(named) >= 10, "README names the main parameters"
    unknown = sorted(named - known)
    assert not unknown, f"README names parameters the schema lacks: {unknown}"
