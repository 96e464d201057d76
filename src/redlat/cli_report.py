"""`redlat analyze` and `redlat report`: thin commands over `redlat.analysis` and `redlat.report`.

Registered on the app in `redlat.cli`; heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from redlat.cli_support import fail, hide_loading_bars, set_flag
from redlat.errors import RedlatError


def analyze(
    run_dir: Annotated[Path, typer.Argument(help="a run directory made by `redlat redteam`")],
    as_json: Annotated[bool, typer.Option("--json", help="print the analysis as JSON (points left out)")] = False,
    embedder: Annotated[
        str | None, typer.Option(help="sentence-transformers model: all-minilm-l6-v2 (offline), hub id or path")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="a test case fails when its reply scores above this [the run's]")
    ] = None,
    algorithm: Annotated[str | None, typer.Option(help="kmeans | hdbscan [kmeans]")] = None,
    k: Annotated[int | None, typer.Option("--k", help="k-means clusters [chosen by silhouette, 2..10]")] = None,
    min_failures: Annotated[
        int | None, typer.Option(help="with fewer failing cases, cluster all test cases [10]")
    ] = None,
    map_method: Annotated[str | None, typer.Option("--map", help="auto | tsne | pca [auto]")] = None,
    seed: Annotated[int | None, typer.Option(help="seed for k-means and the map [0]")] = None,
    device: Annotated[str | None, typer.Option(help="where the embedder runs: auto | cpu | cuda ... [auto]")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML file of analysis settings; flags override it")] = None,
) -> None:
    """Cluster a run's failing test cases and rank the phrases that go with failure; store the result in the run."""
    from redlat.analysis.analyze import analyze_run
    from redlat.config import AnalyzeConfig, build_config
    from redlat.display import render_analysis

    overrides: dict[str, Any] = {}
    for key, value in [("embedder", embedder), ("threshold", threshold), ("algorithm", algorithm), ("k", k),
                       ("min_failures", min_failures), ("map", map_method), ("seed", seed), ("device", device)]:
        set_flag(overrides, key, value)
    try:
        cfg = build_config(AnalyzeConfig, config, overrides)
        hide_loading_bars()
        analysis = analyze_run(run_dir, cfg)
    except RedlatError as exc:
        fail(str(exc), exc.exit_code)
    data = analysis.to_dict(points=False)
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        render_analysis(data)
        typer.echo(f"stored as analysis {analysis.analysis_id} in {run_dir}", err=True)


def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="run directories made by `redlat redteam`")],
    output: Annotated[Path, typer.Option("--output", "-o", help="the HTML file to write")] = Path("report.html"),
    analyze_missing: Annotated[
        bool, typer.Option("--analyze/--no-analyze", help="analyse runs that have no stored analysis first")
    ] = True,
    threshold: Annotated[
        float | None, typer.Option(help="count offensive replies at this threshold [each run's]")
    ] = None,
    embedder: Annotated[str | None, typer.Option(help="embedder for runs analysed now [all-minilm-l6-v2]")] = None,
    score_test_cases: Annotated[
        bool, typer.Option(help="comparison: score the test cases themselves with each run's classifier")
    ] = True,
    config: Annotated[Path | None, typer.Option(help="YAML file of report settings; flags override it")] = None,
) -> None:
    """Write one self-contained HTML page (no network needed) on one or more runs, rebuilt from their stores."""
    from redlat.config import ReportConfig, build_config
    from redlat.display import safe_text
    from redlat.report.render import build_report

    overrides: dict[str, Any] = {"analyze": analyze_missing, "score_test_cases": score_test_cases}
    set_flag(overrides, "threshold", threshold)
    set_flag(overrides, "analysis.embedder", embedder)

    def announce(run_dir: Path) -> None:
        typer.echo(f"analysing {safe_text(str(run_dir))} (stored; later reports reuse it) ...", err=True)

    try:
        cfg = build_config(ReportConfig, config, overrides)
        hide_loading_bars()
        path = build_report(run_dirs, output, cfg, on_analyze=announce)
    except RedlatError as exc:
        fail(str(exc), exc.exit_code)
    typer.echo(str(path))
