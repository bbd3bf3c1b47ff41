#!/usr/bin/env python3
"""Write the generated sections of docs/results.md from the reports in docs/figures/*.json.

    python tools/results.py           # rewrite the generated sections in place
    python tools/results.py --check   # exit 1 when they are stale (test/test_docs.py runs this)

A generated section sits between two marker lines,

    <!-- BEGIN generated: NAME (...) -->
    <!-- END generated: NAME -->

and everything between them is replaced; the rest of the page is left as written. Sections:

- ``speed``: one row per ``docs/figures/bench_*.json`` (what ``vode bench --out FILE`` writes).

Where a figure comes from: a report may carry ``"measured": {"date": "YYYY-MM-DD", "commit":
"abc1234", "command": "vode bench ..."}``; what it lacks is taken from git (the last commit that
changed the file, and its date; "uncommitted" for a file with changes not yet committed). So a
new report is committed first, then this script is run and docs/results.md committed. Reports
without a command of their own were made by the commands written above the section.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from vode_ros.files import atomic_write  # noqa: E402 - the checkout's package, after its path

RESULTS = ROOT / "docs" / "results.md"
FIGURES = ROOT / "docs" / "figures"

SECTION = re.compile(r"(<!-- BEGIN generated: (?P<name>[\w-]+)[^\n]*-->\n)(?P<body>.*?)"
                     r"(<!-- END generated: (?P=name) -->)", re.S)
BACKEND_ORDER = {"hybrid": 0, "geometric": 1, "network": 2}
STAGES = ("decode", "preprocess", "depth", "pose", "odometry", "publish")


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                             check=True)
    except (OSError, subprocess.CalledProcessError):
        return ""
    return out.stdout.strip()


def provenance(path: Path, report: dict) -> dict:
    """Date and commit (and command, where it says) of one report: its own "measured" entry,
    else git."""
    given = dict(report.get("measured") or {})
    rel = path.relative_to(ROOT).as_posix()
    if "commit" not in given or "date" not in given:
        if _git("status", "--porcelain", "--", rel):
            given.setdefault("commit", "uncommitted")
            given.setdefault("date", "")
        else:
            full, _, date = _git("log", "-1", "--format=%H %cs", "--", rel).partition(" ")
            given.setdefault("commit", full[:7] or "unknown")
            given.setdefault("date", date or "unknown")
    return given


def sequence_name(report: dict) -> str:
    """'7-Scenes redkitchen', 'KITTI 06', ...: the reader's layout and the input's folder."""
    layout = report.get("layout", "")
    name = Path(str(report.get("input", ""))).name
    if layout == "7scenes":
        return "7-Scenes " + name.removeprefix("7scenes-")
    if layout == "kitti":
        return "KITTI " + name
    if layout == "euroc":
        return "EuRoC " + name
    return f"{layout} {name}".strip()


def _ms(stat: dict | None, key: str = "p50_ms") -> str:
    return "" if not stat else f"{stat[key]:.2f}"


def speed_rows(figures: Path = FIGURES) -> list[tuple[dict, dict, str]]:
    """(report, provenance, file name) of every bench report, sorted by sequence and backend."""
    rows = []
    for path in sorted(figures.glob("bench_*.json")):
        report = json.loads(path.read_text())
        rows.append((report, provenance(path, report), path.name))
    rows.sort(key=lambda r: (sequence_name(r[0]), BACKEND_ORDER.get(r[0].get("pose_backend"), 9)))
    return rows


def render_speed(figures: Path = FIGURES) -> str:
    head = ("| sequence | image | pose backend | fps end to end | total p50 / p99 ms | "
            + " | ".join(STAGES) + " | geometry p50 / p99 ms | ONNX Runtime alone, depth + "
            "pose ms | frames timed | provider, CPUs | measured | report |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    commands = []
    for report, prov, name in speed_rows(figures):
        stages = report.get("stages", {})
        total = stages.get("total")
        geometry = report.get("geometry_in_pose_ms")
        model = report.get("model_only_ms", {})
        w, h = report.get("image_size", ("?", "?"))
        cells = [
            sequence_name(report), f"{w}x{h}", report.get("pose_backend", ""),
            f"{report.get('fps_end_to_end', float('nan')):.1f}",
            f"{_ms(total)} / {_ms(total, 'p99_ms')}" if total else "",
            *(_ms(stages.get(s)) for s in STAGES),
            f"{_ms(geometry)} / {_ms(geometry, 'p99_ms')}" if geometry else "",
            (f"{model['depth_ms']:.1f} + {model['pose_ms']:.1f}"
             if "depth_ms" in model and "pose_ms" in model else ""),
            str(report.get("frames_timed", "")),
            f"{report.get('provider', '')}, {report.get('machine', {}).get('cpus', '?')}",
            f"{prov['date']}, {prov['commit']}".strip(", "),
            f"[{name}](figures/{name})",
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if prov.get("command"):
            commands.append(f"    {prov['command']}")
    text = "\n".join(lines) + "\n"
    if commands:
        text += "\nCommands the reports name:\n\n" + "\n".join(commands) + "\n"
    return text


RENDERERS = {"speed": render_speed}


def regenerate(text: str) -> str:
    """The page with every generated section rewritten (unknown section names are an error)."""
    def fill(match: re.Match) -> str:
        name = match.group("name")
        if name not in RENDERERS:
            raise SystemExit(f"docs/results.md: no generator for section '{name}' "
                             f"(known: {', '.join(RENDERERS)})")
        return match.group(1) + RENDERERS[name]() + match.group(4)
    return SECTION.sub(fill, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when docs/results.md's generated sections are stale")
    args = parser.parse_args(argv)
    text = RESULTS.read_text()
    new = regenerate(text)
    if args.check:
        if new != text:
            print("docs/results.md: generated sections are stale; run python tools/results.py",
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        atomic_write(RESULTS, new)
        print("docs/results.md: generated sections rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
