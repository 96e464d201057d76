"""Everything the report shows, gathered from the run stores alone (plain data; no HTML here).

A run with no stored analysis is analysed first (and the analysis stored) unless the config says not to, so
`redlat report` can always be rerun to regenerate the page from what the stores hold.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from redlat.analysis.stored import latest_analysis
from redlat.config import ReportConfig
from redlat.errors import ConfigError
from redlat.report import figures
from redlat.sections import section_tables
from redlat.store import DB_NAME, RunStore
from redlat.summary import summarize

log = logging.getLogger(__name__)


def collect_report(
    run_dirs: Sequence[str | Path],
    cfg: ReportConfig | None = None,
    *,
    embedder: Callable[[Sequence[str]], Any] | None = None,
    on_analyze: Callable[[Path], None] | None = None,
) -> dict[str, Any]:
    """The report's content: one entry per run, the comparison (with several runs), and the plots as data URIs.

    A harden-loop run directory stands for its attack runs (each attack's runs side by side: the original, then each
    hardened model) and adds its before/after table and Pareto figures.
    """
    cfg = cfg or ReportConfig()
    if not run_dirs:
        raise ConfigError("give at least one run directory to report on")
    for run_dir in run_dirs:  # every run must open before any is analysed and stored
        RunStore(run_dir).close()
    experiments, expanded = [], []
    for run_dir in run_dirs:
        block = _experiment_block(Path(run_dir))
        if block is None:
            expanded.append(Path(run_dir))
        else:
            experiments.append(block)
            expanded += [Path(d) for d in block["attack_runs"]]
    run_dirs = expanded
    runs = [_collect_run(Path(d), cfg, embedder=embedder, on_analyze=on_analyze) for d in run_dirs]
    report: dict[str, Any] = {"runs": runs, "comparison": None, "comparison_plot": None, "experiments": experiments,
                              "comparison_metrics": []}
    if len(runs) > 1:
        from redlat.compare import compare_runs

        rows = compare_runs(run_dirs, threshold=cfg.threshold, score_test_cases=cfg.score_test_cases)
        for row, run in zip(rows, runs, strict=True):
            row["name"] = run["name"]
            row["metrics_by_name"] = {m["name"]: m for m in row.get("metrics", [])}
        report["comparison"] = rows
        extra = {m["name"]: m["label"] for row in rows for m in row.get("metrics", []) if m["name"] != "failure_rate"}
        report["comparison_metrics"] = list(extra.items())  # each run metric beyond the failure rate, a column
        try:
            report["comparison_plot"] = figures.comparison_plot(rows)
        except ConfigError:
            report["comparison_plot"] = None
    return report


def _collect_run(
    run_dir: Path,
    cfg: ReportConfig,
    *,
    embedder: Callable[[Sequence[str]], Any] | None,
    on_analyze: Callable[[Path], None] | None,
) -> dict[str, Any]:
    with RunStore(run_dir) as store:
        summary = summarize(store, threshold=cfg.threshold, top=0)
        info = store.run_info()
        attempts = list(store.attempts(order="score"))
        analysis = latest_analysis(store)
        rl_steps = store.training_steps("rl")
    if analysis is None and cfg.analyze and attempts:
        from redlat.analysis.analyze import analyze_run

        if on_analyze is not None:
            on_analyze(run_dir)
        analysis = analyze_run(run_dir, cfg.analysis, embedder=embedder)
    threshold = summary["threshold"]
    clusters_of = {p.index: p.nearest for p in analysis.points} if analysis is not None else {}
    failing = [a for a in attempts if a.score > threshold]
    passing = [a for a in attempts if a.score <= threshold]
    shown = failing + passing[: max(0, cfg.min_table_rows - len(failing))]
    table = [
        {"index": a.index, "score": a.score, "failing": a.score > threshold, "test_case": a.test_case,
         "reply": a.reply, "cluster": clusters_of.get(a.index)}
        for a in shown
    ]
    analysis_data = analysis.to_dict() if analysis is not None else None
    return {
        "run_dir": str(run_dir),
        "name": display_name(run_dir),
        "summary": summary,
        "config_json": json.dumps(info.config, indent=2, sort_keys=True),
        "provenance": _provenance_brief(info.provenance),
        "table": table,
        "n_failing": len(failing),
        "histogram": figures.score_histogram([a.score for a in attempts], threshold, bins=cfg.histogram_bins,
                                             classifier=summary["classifier"]) if attempts else None,
        "sections": section_tables(summary, figures=True),  # rates by group or turn, leaked spans (sections.py)
        "reward_curve": figures.reward_curve(rl_steps),
        "rl_steps": len([s for s in rl_steps if s["step"] > 0]),
        "analysis": analysis_data,
        "cluster_map": figures.cluster_map(analysis_data["points"], analysis.k, analysis.map_method)
        if analysis is not None and analysis.points else None,
    }


def display_name(run_dir: Path) -> str:
    """A run's name on the page: its folder, or MODEL/ATTACK for a harden-loop's attack runs."""
    if run_dir.parent.parent.name == "attacks":
        return f"{run_dir.parent.name}/{run_dir.name}"
    return run_dir.name


def _experiment_block(run_dir: Path) -> dict[str, Any] | None:
    """An experiment's table, figures (its Pareto fronts; the transfer matrix of an image experiment) and, for a
    harden-loop, its attack runs (grouped by attack, the original first); None for a red-team run directory. An
    unfinished experiment is refused: its table would be partial."""
    with RunStore(run_dir) as store:
        if not store.has_run() or not store.run_info().command.startswith("experiment "):
            return None
        command = store.run_info().command
        if store.run_info().status != "complete":
            raise ConfigError(f"{run_dir}: the {command.removeprefix('experiment ')} experiment has not finished; "
                              "rerun it to resume, then report")
        from redlat.experiments.pareto import caption, summarize_experiment, table_rows
        from redlat.experiments.registry import for_command

        summary = summarize_experiment(store)
        attacks = store.get_meta("attacks") or []
    header, rows = table_rows(summary)
    attack_runs: list[str] = []
    if command == "experiment harden-loop":
        models = [s["setting"] for s in summary["settings"]]
        seeds = summary["config"].get("seeds") or [summary["config"].get("seed", 0)]
        # a loop of several seeds keeps each seed's runs in seed-N/: the page shows the first seed's attack runs
        base = run_dir if len(seeds) == 1 else run_dir / f"seed-{seeds[0]}"
        attack_runs = [str(base / "attacks" / m / a) for a in attacks for m in models
                       if (base / "attacks" / m / a / DB_NAME).exists()]
    import base64

    from redlat.experiments.pareto import layout_of

    def inline(png: Path) -> str | None:
        return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii") if png.is_file() else None

    lay = layout_of(summary)
    bars = lay.interval or "the 95% interval over seeds"
    figures_out = {}  # figure title -> (the figure the experiment wrote, inlined; its caption)
    for front in lay.fronts:
        uri = inline(run_dir / f"pareto_{front.key}.png")
        if uri is not None:
            figures_out[front.title] = (uri, f"one point per setting, bars: {bars}; dashed: the Pareto front")
    uri = inline(run_dir / "transfer_matrix.png")
    if uri is not None and summary.get("transfer"):
        against = summary["transfer"].get("change_against")
        figures_out["Transfer matrix"] = (
            uri, "robust accuracy (%) of each setting (rows) under each attack (columns; * marks held-out "
            "families)" + (f", coloured by its change against `{against}`" if against else ""))
    return {"name": run_dir.name, "run_dir": str(run_dir), "experiment": summary["experiment"],
            "heading": for_command(command).heading, "header": header,
            "rows": rows, "caption": caption(summary), "figures": figures_out, "attack_runs": attack_runs}


def _provenance_brief(prov: dict[str, Any]) -> dict[str, Any]:
    """The parts of a run's provenance a reader of the report wants: versions, commit, models."""
    models = prov.get("models", {})
    lms = {role: models[role] for role in ("red", "target") if isinstance(models.get(role), dict)}
    return {
        "versions": prov.get("versions", {}),
        "git_commit": prov.get("git", {}).get("commit"),
        "git_dirty": prov.get("git", {}).get("dirty"),
        "models": {role: (f"{lms[role].get('class')}, {lms[role].get('n_params', 0) / 1e6:.1f} M params"
                          if role in lms else None) for role in ("red", "target")},
        "resumed": len(prov.get("resumed_by", [])),
    }
