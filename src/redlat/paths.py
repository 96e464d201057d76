"""Where redlat keeps converted offline models and other derived files."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "REDLAT_CACHE"


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: `override`, else $REDLAT_CACHE, else ~/.cache/redlat. Created if missing."""
    if override is not None:
        root = Path(override)
    elif os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV])
    else:
        root = Path.home() / ".cache" / "redlat"
    root.mkdir(parents=True, exist_ok=True)
    return root
