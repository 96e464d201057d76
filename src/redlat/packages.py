"""Locate the installed packages that ship offline model weights, without importing them (some import TensorFlow)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from redlat.errors import OfflinePackageMissingError

SETUP_SCRIPT = "bash scripts/setup.sh"


def install_command(*specs: str) -> str:
    """The pip command that installs packages without their (unneeded, heavy) declared dependencies."""
    return "pip install --no-deps " + " ".join(specs)


def package_dir(module: str, pip_spec: str, required: Sequence[str] = ()) -> Path:
    """The directory of an installed package, found without importing it.

    Raises OfflinePackageMissingError, whose message gives the exact install command, if it is not installed or
    lacks one of the `required` files (paths relative to the package directory).
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a missing parent package, or a broken half-installed one
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise OfflinePackageMissingError(
            f"the Python package {pip_spec!r} (module {module!r}) is not installed. Install it with:\n"
            f"    {install_command(pip_spec)}\n"
            f"(--no-deps matters: its declared dependencies are large and not needed), or run {SETUP_SCRIPT}"
        )
    root = Path(locations[0])
    missing = [name for name in required if not (root / name).is_file()]
    if missing:
        raise OfflinePackageMissingError(
            f"{pip_spec} is installed at {root} but lacks {', '.join(missing)}; reinstall it with:\n"
            f"    pip install --force-reinstall --no-deps {pip_spec}"
        )
    return root
