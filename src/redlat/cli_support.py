"""Helpers shared by the command modules (`cli.py`, `cli_report.py`): errors, flag overrides, quiet loading.

Kept free of heavy imports so that `redlat --help` stays instant."""

from __future__ import annotations

from typing import Annotated, Any

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


def parse_setting(item: str) -> tuple[str, Any]:
    """`--set KEY=VALUE`: the dotted key and the value as text, which the setting's own type reads (8 for a
    number, true for a flag; a secret 4471 stays text); a value in [...] or {...} is read as YAML."""
    import yaml

    from redlat.errors import ConfigError

    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set takes KEY=VALUE with a dotted key (e.g. leakage.span=8), got {item!r}")
    if raw.strip()[:1] in ("[", "{"):
        try:
            return key, yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {key}: cannot read {raw!r} as a list or mapping: {exc}") from exc
    return key, raw


def hide_loading_bars() -> None:
    """No transformers weight-loading bars: our own progress bar is the one to watch, or none."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


# The --ray flags, shared by `redteam` and the experiment sweeps (their values go to the config's `ray` section).
RayFlag = Annotated[
    bool | None,
    typer.Option("--ray/--no-ray", help="run the work on Ray (a local Ray instance unless an address is given) [no]"),
]
RayAddressFlag = Annotated[
    str | None, typer.Option(help="Ray cluster to join, e.g. HEAD:6379 (implies --ray) [$RAY_ADDRESS, else local]")
]
RayCpusFlag = Annotated[float | None, typer.Option(help="CPUs per Ray worker or task [1]")]
RayGpusFlag = Annotated[float | None, typer.Option(help="GPUs (or a fraction of one) per Ray worker or task [0]")]


def set_ray_flags(
    overrides: dict[str, Any],
    enabled: bool | None,
    address: str | None,
    cpus: float | None,
    gpus: float | None,
    workers: int | None = None,
) -> None:
    """The --ray flags into overrides["ray"]; any of them given without --ray/--no-ray means --ray."""
    if enabled is None and any(v is not None for v in (address, cpus, gpus, workers)):
        enabled = True
    for key, value in (("enabled", enabled), ("address", address), ("cpus_per_worker", cpus),
                       ("gpus_per_worker", gpus), ("workers", workers)):
        set_flag(overrides, f"ray.{key}", value)
