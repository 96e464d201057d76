"""Small file helpers for the scorer cache: atomic writes, so a crash never leaves half a file behind."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success move it over `target` (os.replace), else delete it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # A unique name in the same folder (so os.replace is atomic), created with the usual umask permissions.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(target: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` and then atomically put the result at `target`."""
    with atomic_path(target) as tmp:
        write(tmp)


def write_text_atomic(target: Path, text: str) -> None:
    write_atomic(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))
