"""Progress bars for long jobs (tqdm on stderr, shown only on a terminal)."""
from __future__ import annotations

import sys


def progress_bar(total: int | None, desc: str, quiet: bool = False, unit: str = "frame"):
    """A tqdm bar on stderr; disabled when ``quiet`` or when stderr is not a terminal (logs, CI).
    Update it with ``bar.update(n)``, write lines above it with ``bar.write(text)``."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, disable=quiet or not sys.stderr.isatty(),
                file=sys.stderr, dynamic_ncols=True)
