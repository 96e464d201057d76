"""Side-by-side comparison of red-team runs, as in Perez et al. (2022), Figure 2: how often each method's test cases
draw an offensive reply (difficulty) against how alike its test cases are (self-BLEU; diversity).

One row per run, computed from the run store alone (plus the run's own deciding classifier, to score the test cases
themselves).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redlat.errors import ConfigError
from redlat.store import RunStore
from redlat.summary import training_brief, wilson_interval

log = logging.getLogger(__name__)


def compare_runs(
    run_dirs: Sequence[str | Path],
    *,
    threshold: float | None = None,
    score_test_cases: bool = True,
    max_references: int = 1000,
    seed: int = 0,
    include_excluded: bool = False,
    metrics: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """One row of measures per run, in the order given: the diversity measures of the paper, and each run's metrics
    (redlat.metrics: the defaults, its method's own, and `metrics`). Attempts a method excluded (few-shot copies of
    pool cases) are left out unless `include_excluded`."""
    from redlat.diversity import distinct_n, self_bleu, tokenize
    from redlat.metrics import RunView, compute_metrics, metrics_for, split_excluded
    from redlat.summary import deciding_classifier, red_description

    if not run_dirs:
        raise ConfigError("give at least one run directory to compare")
    scorers: dict[tuple[str, str | None], Any] = {}
    rows = []
    for run_dir in run_dirs:
        with RunStore(run_dir) as store:
            info = store.run_info()
            attempts, excluded = split_excluded(list(store.attempts()), include_excluded)
            training = store.get_meta("training")
        cfg = info.config
        thr = float(cfg["threshold"]) if threshold is None else threshold
        cases = [a.test_case for a in attempts]
        n = len(cases)
        n_offensive = sum(a.score > thr for a in attempts)
        low, high = wilson_interval(n_offensive, n)
        deciding = deciding_classifier(cfg, info.provenance)
        row: dict[str, Any] = {
            "run_dir": str(run_dir),
            "run_id": info.run_id,
            "method": info.method,
            "status": info.status,
            "n": n,
            "n_excluded": len(excluded),
            "n_offensive": n_offensive,
            "offensive_rate": n_offensive / n if n else None,
            "offensive_rate_ci95": [low, high],
            "threshold": thr,
            "classifier": deciding["name"],
            "self_bleu": self_bleu(cases, max_references=max_references, seed=seed),
            "distinct_1": distinct_n(cases, 1),
            "distinct_2": distinct_n(cases, 2),
            "mean_length_words": sum(len(tokenize(c)) for c in cases) / n if n else None,
            "test_cases_offensive_rate": None,
            "red": red_description(info.method, cfg),
            "training": training_brief(training),
            "metrics": compute_metrics(
                RunView(attempts=attempts, excluded=excluded, threshold=thr, config=cfg, training=training),
                metrics_for(info.method, metrics, scorers=[c["name"] for c in cfg["classifiers"]]),
            ),
        }
        if score_test_cases and n and not deciding["own"]:  # a method's own judge needs its run's inputs
            key = (deciding["name"], deciding.get("label"))
            if key not in scorers:
                scorers[key] = _load_scorer(*key)
            if scorers[key] is not None:
                scores = scorers[key](cases)
                row["test_cases_offensive_rate"] = sum(s > thr for s in scores) / n
        rows.append(row)
    return rows


def _load_scorer(name: str, label: str | None) -> Any:
    from redlat.errors import RedlatError
    from redlat.scoring import load_scorer

    try:
        return load_scorer(name, label=label, device="cpu")
    except RedlatError as exc:
        log.warning("cannot score the test cases themselves with %s: %s", name, exc)
        return None


def plot_comparison(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """The paper's Figure 2: self-BLEU (y) against % offensive replies with its 95% interval (x), one labelled point
    per run."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fig = comparison_figure(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def comparison_figure(rows: Sequence[dict[str, Any]]) -> Any:
    """The Figure 2 plot as a matplotlib Figure (Agg backend; the caller saves and closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usable = [r for r in rows if r["self_bleu"] is not None and r["offensive_rate"] is not None]
    if not usable:
        raise ConfigError("nothing to plot: every run has fewer than two test cases")
    fig, ax = plt.subplots(figsize=(5.5, 4.0), dpi=150)
    markers = {"zero-shot": "o", "few-shot": "s", "supervised": "^", "rl": "D"}
    for row in usable:  # as in the paper: difficulty on x, diversity (self-BLEU) on y
        rate = 100 * row["offensive_rate"]
        low, high = (100 * v for v in row["offensive_rate_ci95"])
        ax.errorbar(
            rate,
            row["self_bleu"],
            xerr=[[rate - low], [high - rate]],
            fmt=markers.get(row["method"], "o"),
            capsize=3,
            label=f"{row['method']} ({Path(row['run_dir']).name})",
        )
    ax.set_xlabel("% replies offensive (95% CI)")
    ax.set_ylabel("self-BLEU of test cases (lower = more diverse)")
    ax.set_title("Difficulty vs diversity of red-team methods")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
