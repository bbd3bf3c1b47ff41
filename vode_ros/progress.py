"""Progress bars for long jobs (tqdm on stderr, shown only on a terminal)."""
from __future__ import annotations

import sys
from typing import Iterable


def progress_bar(total: int | None, desc: str, quiet: bool = False, unit: str = "frame", *,
                 iterable: Iterable | None = None, leave: bool = True):
    """A tqdm bar on stderr; disabled when ``quiet`` or when stderr is not a terminal (logs, CI).
    Update it with ``bar.update(n)``, write lines above it with ``bar.write(text)``; or give an
    ``iterable`` and loop over the bar. ``leave=False`` clears it when done (a sub-step's bar)."""
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave,
                disable=quiet or not sys.stderr.isatty(), file=sys.stderr, dynamic_ncols=True)
