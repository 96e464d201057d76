"""Running an experiment as a command, the same for every one: its sweep (run or resumed), then the summary, the
Pareto figures, the transfer matrix where there is one, and RUN_DIR/summary.json. Also the Python API's functions,
one per experiment (`from redlat import trojans_text`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redlat.adversarial.trojans import Trojan
    from redlat.experiments.sweep import BarFactory, Progress



def run_experiment(
    name: str, cfg: Any, run_dir: str | Path, *, progress: Progress | None = None, bar: BarFactory | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Run (or resume) experiment `name` into run_dir; write its figures and summary.json there; return the summary."""
    from redlat.atomic import write_text_atomic
    from redlat.experiments.pareto import plot_fronts, plot_transfer, summarize_experiment
    from redlat.experiments.registry import experiment

    run_dir = Path(run_dir)
    store = experiment(name).run_store(cfg, run_dir, progress=progress, bar=bar, **extra)
    with store:
        summary = summarize_experiment(store)
    figures = plot_fronts(summary, run_dir)
    heatmap = plot_transfer(summary, run_dir) if summary.get("transfer") else None
    if heatmap is not None:
        figures["transfer_matrix"] = heatmap
    summary["figures"] = {key: str(path) for key, path in figures.items()}
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2, allow_nan=True) + "\n")
    return summary


def trojans_vision(
    cfg: Any, run_dir: str | Path, *, trojans: Sequence[Trojan] | None = None, progress: Progress | None = None,
    bar: BarFactory | None = None,
) -> dict[str, Any]:
    """`redlat experiment trojans-vision` (`trojans`: your own Trojan objects instead of the config's)."""
    return run_experiment("trojans-vision", cfg, run_dir, progress=progress, bar=bar, trojans=trojans)


def transfer(cfg: Any, run_dir: str | Path, *, progress: Progress | None = None,
             bar: BarFactory | None = None) -> dict[str, Any]:
    """`redlat experiment transfer`."""
    return run_experiment("transfer", cfg, run_dir, progress=progress, bar=bar)


def trojans_text(cfg: Any, run_dir: str | Path, *, progress: Progress | None = None,
                 bar: BarFactory | None = None) -> dict[str, Any]:
    """`redlat experiment trojans-text`."""
    return run_experiment("trojans-text", cfg, run_dir, progress=progress, bar=bar)


def trojans_lm(
    cfg: Any, run_dir: str | Path, *, progress: Progress | None = None, bar: BarFactory | None = None,
    loaded: Any = None,
) -> dict[str, Any]:
    """`redlat experiment trojans-lm` (`loaded`: the chat model already in memory, else it is loaded)."""
    return run_experiment("trojans-lm", cfg, run_dir, progress=progress, bar=bar, loaded=loaded)


def harden_loop(cfg: Any, run_dir: str | Path, *, progress: Progress | None = None,
                bar: BarFactory | None = None) -> dict[str, Any]:
    """`redlat experiment harden-loop`."""
    return run_experiment("harden-loop", cfg, run_dir, progress=progress, bar=bar)
