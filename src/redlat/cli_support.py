"""Helpers shared by the command modules (`cli.py`, `cli_report.py`): errors, flag overrides, quiet loading.

Kept free of heavy imports so that `redlat --help` stays instant."""

from __future__ import annotations

from typing import Any

import typer


def fail(message: str, code: int = 2) -> None:
    """Print a user-facing error and exit (status 2 by default), with no traceback."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def set_flag(overrides: dict[str, Any], dotted: str, value: Any) -> None:
    """Put a flag's value at its place in the nested config, only if the flag was given."""
    if value is None:
        return
    node = overrides
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def hide_loading_bars() -> None:
    """No transformers weight-loading bars: our own progress bar is the one to watch, or none."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
