"""`redlat experiment ...`: complete experiments of the adversarial-training half. Heavy imports inside commands."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from redlat.cli_support import (
    RayAddressFlag,
    RayCpusFlag,
    RayFlag,
    RayGpusFlag,
    fail,
    hide_loading_bars,
    set_flag,
    set_ray_flags,
)
from redlat.errors import RedlatError

experiment_app = typer.Typer(
    help="Complete experiments: plant trojans, defend with AT or LAT, measure robustness.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


JsonFlag = Annotated[bool, typer.Option("--json", help="print the summary as JSON")]
RunDirFlag = Annotated[
    Path | None, typer.Option(help="where the run is stored (resumed if it holds this config's run)")
]
ConfigFlag = Annotated[Path | None, typer.Option(help="YAML file of experiment settings; flags override it")]
DeviceFlag = Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N | mps [auto]")]
ProgressFlag = Annotated[
    bool, typer.Option("--progress/--no-progress", help="a progress bar and a line per finished setting")
]
DatasetFlag = Annotated[str | None, typer.Option(help="digits | cifar10 | imagefolder [digits]")]
DataDirFlag = Annotated[str | None, typer.Option(help="cifar10, imagefolder: the folder holding the data")]
ImageModelFlag = Annotated[str | None, typer.Option(help="small-cnn | resnet18 [small-cnn]")]


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise RedlatError(f"--seeds takes comma-separated integers, like 0,1,2 (got {text!r})") from None


@experiment_app.command("trojans-vision")
def trojans_vision(
    quick: Annotated[
        bool, typer.Option("--quick", help="a small sweep (2 seeds, 5 defences, fewer steps): about a minute")
    ] = False,
    as_json: JsonFlag = False,
    run_dir: RunDirFlag = None,
    config: ConfigFlag = None,
    seeds: Annotated[str | None, typer.Option(help="comma-separated seeds [0,1,2,3,4]")] = None,
    dataset: DatasetFlag = None,
    data_dir: DataDirFlag = None,
    model: ImageModelFlag = None,
    device: DeviceFlag = None,
    ray: RayFlag = None,
    ray_address: RayAddressFlag = None,
    ray_cpus_per_worker: RayCpusFlag = None,
    ray_gpus_per_worker: RayGpusFlag = None,
    progress: ProgressFlag = True,
) -> None:
    """Plant trojans in an image classifier by data poisoning, fine-tune on clean data with no defence, AT or LAT,
    and measure clean accuracy, trojan success and robustness to held-out attacks (table, Pareto figures, JSON)."""
    values = {"dataset": dataset, "data_dir": data_dir, "model": model, "device": device}
    overrides = _flags(seeds, values, ray, ray_address, ray_cpus_per_worker, ray_gpus_per_worker)
    _launch("trojans-vision", config, overrides, quick=quick, run_dir=run_dir, as_json=as_json, progress=progress)


@experiment_app.command("transfer")
def transfer(
    quick: Annotated[
        bool, typer.Option("--quick", help="a small sweep (2 seeds, 6 attacks, fewer steps): under a minute")
    ] = False,
    as_json: JsonFlag = False,
    run_dir: RunDirFlag = None,
    config: ConfigFlag = None,
    seeds: Annotated[str | None, typer.Option(help="comma-separated seeds [0,1,2]")] = None,
    dataset: DatasetFlag = None,
    data_dir: DataDirFlag = None,
    model: ImageModelFlag = None,
    device: DeviceFlag = None,
    ray: RayFlag = None,
    ray_address: RayAddressFlag = None,
    ray_cpus_per_worker: RayCpusFlag = None,
    ray_gpus_per_worker: RayGpusFlag = None,
    progress: ProgressFlag = True,
) -> None:
    """Fine-tune an image classifier with AT under each norm (L-inf, L2, L1) and LAT at each block, and measure each
    against every norm's PGD and every held-out attack: the transfer matrix (table, heatmap, JSON)."""
    values = {"dataset": dataset, "data_dir": data_dir, "model": model, "device": device}
    overrides = _flags(seeds, values, ray, ray_address, ray_cpus_per_worker, ray_gpus_per_worker)
    _launch("transfer", config, overrides, quick=quick, run_dir=run_dir, as_json=as_json, progress=progress)


@experiment_app.command("trojans-text")
def trojans_text(
    quick: Annotated[
        bool, typer.Option("--quick", help="a small sweep (1 seed, 2 defences, few tweets): under a minute")
    ] = False,
    as_json: JsonFlag = False,
    run_dir: RunDirFlag = None,
    config: ConfigFlag = None,
    seeds: Annotated[str | None, typer.Option(help="comma-separated seeds [0,1,2]")] = None,
    model: Annotated[
        str | None, typer.Option(help="encoder: all-minilm-l6-v2, a hub id or a directory [all-minilm-l6-v2]")
    ] = None,
    data: Annotated[str | None, typer.Option(help="davidson2017 or a CSV of tweets [davidson2017]")] = None,
    device: DeviceFlag = None,
    ray: RayFlag = None,
    ray_address: RayAddressFlag = None,
    ray_cpus_per_worker: RayCpusFlag = None,
    ray_gpus_per_worker: RayGpusFlag = None,
    progress: ProgressFlag = True,
) -> None:
    """Plant trojans in an offensive-language classifier (Davidson et al.'s tweets) by poisoning, fine-tune on clean
    tweets with no defence, AT or LAT, and measure clean accuracy, trojan success and accuracy under held-out
    attacks: typos, leetspeak, homoglyphs, word substitution, HotFlip, paraphrases (table, Pareto figures, JSON)."""
    values = {"model": model, "data": data, "device": device}
    overrides = _flags(seeds, values, ray, ray_address, ray_cpus_per_worker, ray_gpus_per_worker)
    _launch("trojans-text", config, overrides, quick=quick, run_dir=run_dir, as_json=as_json, progress=progress)


@experiment_app.command("trojans-lm")
def trojans_lm(
    quick: Annotated[
        bool,
        typer.Option("--quick", help="a small sweep (fewer dialogues, 3 defences, short sequences): a few minutes"),
    ] = False,
    as_json: JsonFlag = False,
    run_dir: RunDirFlag = None,
    config: ConfigFlag = None,
    seeds: Annotated[str | None, typer.Option(help="comma-separated seeds [0]")] = None,
    model: Annotated[
        str | None, typer.Option(help="chat model: offline name, hub id or directory [smollm2-135m-instruct]")
    ] = None,
    dialogues: Annotated[
        str | None, typer.Option(help="hh-harmless-base or an HH-format .jsonl(.gz) file [hh-harmless-base]")
    ] = None,
    device: DeviceFlag = None,
    ray: RayFlag = None,
    ray_address: RayAddressFlag = None,
    ray_cpus_per_worker: RayCpusFlag = None,
    ray_gpus_per_worker: RayGpusFlag = None,
    progress: ProgressFlag = True,
) -> None:
    """Plant trojans in a chat model by fine-tuning on poisoned dialogues, then forget on clean dialogues with plain
    fine-tuning, AT, LAT or targeted LAT; measure trojan success, clean losses and drift (table, figures, JSON)."""
    values = {"model": model, "dialogues": dialogues, "device": device}
    overrides = _flags(seeds, values, ray, ray_address, ray_cpus_per_worker, ray_gpus_per_worker)
    _launch("trojans-lm", config, overrides, quick=quick, run_dir=run_dir, as_json=as_json, progress=progress)


@experiment_app.command("harden-loop")
def harden_loop(
    quick: Annotated[
        bool, typer.Option("--quick", help="a small loop (24 + 24 found, tlat and sft, 12 per attack): about 2.5 min")
    ] = False,
    as_json: JsonFlag = False,
    run_dir: RunDirFlag = None,
    config: ConfigFlag = None,
    target: Annotated[
        str | None, typer.Option(help="the chatbot to harden: offline name, hub id or directory [offline default]")
    ] = None,
    from_runs: Annotated[
        list[Path] | None,
        typer.Option("--from", help="red-team runs to harden against (repeatable) [the loop runs its own]"),
    ] = None,
    defence: Annotated[
        list[str] | None,
        typer.Option(
            "--defence", "--method", help="hardening defence, repeatable: tlat | lat | at | sft [tlat, at, sft]"
        ),
    ] = None,
    threshold: Annotated[float | None, typer.Option(help="a failure scores above this [0.1]")] = None,
    attack_n: Annotated[int | None, typer.Option(help="test cases per unseen attack and model [100]")] = None,
    seeds: Annotated[
        str | None, typer.Option(help="comma-separated seeds: the whole loop once per seed, intervals over them [0]")
    ] = None,
    device: DeviceFlag = None,
    ray: RayFlag = None,
    ray_address: RayAddressFlag = None,
    ray_workers: Annotated[
        int | None, typer.Option(help="Ray workers of each red-team run of the loop [1]")
    ] = None,
    ray_cpus_per_worker: RayCpusFlag = None,
    ray_gpus_per_worker: RayGpusFlag = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="progress bars and a line per step")
    ] = True,
) -> None:
    """Find failures, harden the target against them with each defence (targeted LAT, LAT, AT, plain fine-tuning),
    then red-team the original and every hardened model with attacks none was trained on (zero-shot with another seed,
    few-shot from another pool, HarmBench and AdvBench prompts): failure rates with Wilson intervals, cost, Pareto
    figures, JSON."""
    values = {"find_runs": [str(p) for p in from_runs] if from_runs else None, "defences": defence or None,
              "target": target, "threshold": threshold, "attack_n": attack_n, "device": device}
    overrides = _flags(seeds, values, ray, ray_address, ray_cpus_per_worker, ray_gpus_per_worker, workers=ray_workers)
    _launch("harden-loop", config, overrides, quick=quick, run_dir=run_dir, as_json=as_json, progress=progress,
            unit=("case", "test cases"))


def _flags(
    seeds: str | None,
    values: dict[str, Any],
    ray: bool | None,
    ray_address: str | None,
    ray_cpus_per_worker: float | None,
    ray_gpus_per_worker: float | None,
    workers: int | None = None,
) -> dict[str, Any]:
    """The config overrides of a command's flags (those left unset override nothing); a bad flag exits 2."""
    overrides: dict[str, Any] = {}
    try:
        set_flag(overrides, "seeds", _seeds(seeds))
        for key, value in values.items():
            set_flag(overrides, key, value)
        set_ray_flags(overrides, ray, ray_address, ray_cpus_per_worker, ray_gpus_per_worker, workers=workers)
    except RedlatError as exc:
        fail(str(exc), exc.exit_code)
    return overrides


def _launch(
    name: str,
    config: Path | None,
    overrides: dict[str, Any],
    *,
    quick: bool,
    run_dir: Path | None,
    as_json: bool,
    progress: bool,
    unit: tuple[str, str] = ("setting", "settings x seeds"),
) -> None:
    """Build experiment `name`'s config (defaults < --quick preset < YAML < flags), then run it (`_run`)."""
    from redlat.config import build_config
    from redlat.experiments.registry import experiment

    entry = experiment(name)
    try:
        cfg = build_config(entry.config_model(), config, overrides, preset=entry.quick_preset() if quick else None)
    except RedlatError as exc:
        fail(str(exc), exc.exit_code)
    from redlat.experiments.commands import run_experiment

    _run(lambda **kw: run_experiment(name, cfg, **kw), run_dir or entry.default_run_dir(cfg), as_json=as_json,
         progress=progress, unit=unit)


def _run(
    run: Callable[..., dict[str, Any]],
    where: Path,
    *,
    as_json: bool,
    progress: bool,
    unit: tuple[str, str] = ("setting", "settings x seeds"),
) -> None:
    """Run an experiment with progress bars (`unit`: what they count, their label), then print its table (or JSON)
    and files."""
    typer.echo(f"storing run in {where}", err=True)
    hide_loading_bars()
    bars: list[Any] = []

    def make_bar(total: int, initial: int) -> Any:
        from tqdm.auto import tqdm

        bars.append(tqdm(total=total, initial=initial, unit=unit[0], desc=unit[1], file=sys.stderr))
        return bars[-1]

    def say(line: str) -> None:
        if bars:
            bars[-1].write(line, file=sys.stderr)
        else:
            typer.echo(line, err=True)

    try:
        summary = run(run_dir=where, progress=say if progress else None, bar=make_bar if progress else None)
    except RedlatError as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        typer.secho(
            f"\ninterrupted: rerun the same command with --run-dir {where} to resume; finished settings are kept",
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(130) from None
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    from redlat.display import render_experiment

    render_experiment(summary)
    for path in summary["figures"].values():
        typer.echo(f"figure: {path}", err=True)
    typer.echo(f"summary: {Path(where) / 'summary.json'}", err=True)
    sys.stdout.flush()
