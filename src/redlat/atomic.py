"""Atomic writes of cache entries and outputs: a crash or a concurrent process never leaves half a file or folder."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)


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


def install_dir_atomically(
    target: Path, build: Callable[[Path], None], *, is_complete: Callable[[Path], bool], replace: bool = False
) -> None:
    """Build a directory in a temporary sibling, then rename it to `target` in one step.

    A crash leaves only a hidden temporary directory, never a half-written `target`. If another process
    installed a complete `target` while we were building, theirs is kept and ours discarded. `replace` swaps
    out an existing complete `target` (a stale conversion).
    """
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache entry should read like any other directory
    try:
        build(tmp)
        if target.exists() and (replace or not is_complete(target)):
            aside = parent / f".{target.name}.{uuid.uuid4().hex}.old"
            try:
                os.replace(target, aside)
            except FileNotFoundError:  # someone else moved it first
                pass
            else:
                shutil.rmtree(aside, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            # `target` is a non-empty directory again: a concurrent process finished first.
            if not is_complete(target):
                raise
            log.info("%s was created by another process meanwhile; using that copy", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
