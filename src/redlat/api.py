"""Small functions that mirror CLI commands for use from Python."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from redlat.store import RunStore
from redlat.summary import summarize


def summarize_run(run_dir: str | Path, *, threshold: float | None = None, top: int = 10) -> dict[str, Any]:
    """The same summary `redlat summary RUN_DIR --json` prints."""
    with RunStore(run_dir) as store:
        return summarize(store, threshold=threshold, top=top)
