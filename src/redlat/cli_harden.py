"""`redlat harden`: train away the failures red-team runs found. Heavy imports inside the command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from redlat.cli_support import fail, hide_loading_bars, set_flag
from redlat.errors import RedlatError


def harden(
    target: Annotated[
        str | None, typer.Option(help="the target the runs attacked (offline name, hub id, directory)")
    ] = None,
    runs: Annotated[
        list[Path] | None,
        typer.Option("--from", help="a redteam run directory whose failures to train away (repeat)"),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="directory for the hardened model")] = None,
    defence: Annotated[
        str | None, typer.Option("--defence", "--method", help="tlat | lat | at | sft [tlat]")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of settings; flags override it")] = None,
    threshold: Annotated[float | None, typer.Option(help="failure: score above this [each run's own]")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N | mps [auto]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the manifest's measures as JSON")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="a progress bar over steps")] = True,
) -> None:
    """Train the target so that the failures red-team runs found stop: targeted LAT toward a safe reply and away from
    the found one (or LAT, AT, plain fine-tuning), keeping its own replies to the cases it passed. Saves a model
    directory that `redlat redteam --target` loads, with harden.json (measures before and after)."""
    from redlat.config import HardenConfig, build_config

    overrides: dict[str, Any] = {}
    try:
        set_flag(overrides, "target", target)
        set_flag(overrides, "runs", [str(r) for r in runs] if runs else None)
        set_flag(overrides, "output", str(output) if output is not None else None)
        for key, value in (("defence", defence), ("threshold", threshold), ("device", device)):
            set_flag(overrides, key, value)
        cfg = build_config(HardenConfig, config, overrides)
    except RedlatError as exc:
        fail(str(exc), exc.exit_code)
    from redlat.harden import harden as run

    hide_loading_bars()
    bar: Any = None

    def step(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=done - 1, unit="step", desc=f"harden ({cfg.defence})", file=sys.stderr)
        bar.update(1)

    try:
        manifest = run(cfg, on_step=step if progress else None)
    except RedlatError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        typer.secho(f"\ninterrupted: rerun the same command to resume from {cfg.output}.partial",
                    fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(130) from None
    finally:
        if bar is not None:
            bar.close()
    measures = {key: manifest[key] for key in ("counts", "before", "after", "seconds")}
    if as_json:
        typer.echo(json.dumps(measures, indent=2))
        return
    before, after = manifest["before"], manifest["after"]
    counts = manifest["counts"]
    typer.echo(f"hardened {cfg.target} with {cfg.defence} on {counts['failures']} failures "
               f"({counts['retain']} retain, {counts['held_out']} held out) in {manifest['seconds']:.0f} s")
    rows = [
        ("found failures asked again: failure rate", "failure_rate", "{:.1%}"),
        ("held-out passed replies: perplexity", "perplexity", "{:.2f}"),
        ("held-out prompts: agreement with the original", "agreement", "{:.1%}"),
    ]
    for label, key, fmt in rows:
        old = fmt.format(before[key]) if key in before else "-"
        new = fmt.format(after[key]) if key in after else "-"
        typer.echo(f"{label:<48} before {old:>8}   after {new:>8}")
    again = f"redlat redteam --target {cfg.output} --seed 1"
    typer.echo(f"saved: {Path(cfg.output)} (red-team it again: {again})", err=True)
