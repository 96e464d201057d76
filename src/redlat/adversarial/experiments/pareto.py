"""An experiment's results, from the store: mean and 95% interval over seeds, Pareto fronts, table, figures.

The interval is Student's t over seeds (mean +- t(0.975, n - 1) * sd / sqrt(n)); with one seed it is the point.
Fronts: the settings no other setting beats on both axes (clean accuracy up; trojan success down, or held-out
robust accuracy up). The poisoned model before fine-tuning is shown for reference and is not on a front.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from redlat.store import RunStore

REFERENCE = "poisoned"
UNBOUNDED = ("train_seconds", "eps")  # every other metric is a rate in [0, 1]


def interval(values: list[float], bounds: tuple[float, float] | None = None) -> dict[str, float]:
    """Mean and Student-t 95% interval over seeds; `bounds` clips the interval (a rate stays within [0, 1])."""
    finite = [v for v in values if not math.isnan(v)]
    n = len(finite)
    if n == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    mean = sum(finite) / n
    if n == 1:
        return {"mean": mean, "low": mean, "high": mean, "n": 1}
    from scipy.stats import t

    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1))
    half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"mean": mean, "low": low, "high": high, "n": n}


def pareto_front(points: dict[str, tuple[float, float]], *, higher_y_is_better: bool) -> list[str]:
    """Names of the points no other point dominates (x higher is better; y as told), sorted by x."""
    sign = 1.0 if higher_y_is_better else -1.0

    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        ax, ay, bx, by = a[0], sign * a[1], b[0], sign * b[1]
        return ax >= bx and ay >= by and (ax > bx or ay > by)

    front = [n for n, p in points.items() if not any(dominates(q, p) for m, q in points.items() if m != n)]
    return sorted(front, key=lambda n: points[n][0])


def summarize_experiment(store: RunStore) -> dict[str, Any]:
    info = store.run_info()
    details = store.result_settings()
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    seeds: dict[str, set[int]] = defaultdict(set)
    for row in store.results():
        values[row["setting"]][row["metric"]].append(row["value"])
        seeds[row["setting"]].add(row["seed"])
    order = [REFERENCE] + [d["name"] for d in _defence_order(info.config)]
    settings = []
    for name in [n for n in order if n in values] + sorted(set(values) - set(order)):
        settings.append(
            {
                "setting": name,
                **{k: v for k, v in details.get(name, {}).items() if k in ("kind", "family", "label")},
                "seeds": sorted(seeds[name]),
                "metrics": {
                    metric: interval(vals, None if metric in UNBOUNDED else (0.0, 1.0))
                    for metric, vals in sorted(values[name].items())
                },
            }
        )
    defended = {s["setting"]: s["metrics"] for s in settings if s["setting"] != REFERENCE}
    trojan_points = {n: (m["clean_acc"]["mean"], m["mean_asr"]["mean"]) for n, m in defended.items()}
    robust_points = {n: (m["clean_acc"]["mean"], m["heldout_acc"]["mean"]) for n, m in defended.items()}
    return {
        "experiment": "trojans-vision",
        "run_dir": str(store.run_dir),
        "status": info.status,
        "config": info.config,
        "trojans": [t["name"] for t in info.config.get("trojans", [])],
        "held_out_families": list(info.config.get("held_out", [])),
        "settings": settings,
        "pareto": {
            "clean_vs_trojan_success": pareto_front(trojan_points, higher_y_is_better=False),
            "clean_vs_heldout_robustness": pareto_front(robust_points, higher_y_is_better=True),
        },
    }


def _defence_order(config: dict[str, Any]) -> list[dict[str, str]]:
    from redlat.config import DefenceSpec

    return [{"name": DefenceSpec.model_validate(d).name} for d in config.get("defences", [])]


def table_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows for a terminal or Markdown table: mean (low-high) in percent."""
    fronts = summary["pareto"]
    header = ["setting", "clean acc", *[f"ASR {t}" for t in summary["trojans"]], "held-out acc", "front"]
    rows = []
    for s in summary["settings"]:
        m = s["metrics"]
        marks = ("T" if s["setting"] in fronts["clean_vs_trojan_success"] else "") + (
            "R" if s["setting"] in fronts["clean_vs_heldout_robustness"] else ""
        )
        cells = [_pct(m["clean_acc"]), *[_pct(m[f"asr:{t}"]) for t in summary["trojans"]], _pct(m["heldout_acc"])]
        rows.append([s["setting"], *cells, marks])
    return header, rows


def markdown_table(summary: dict[str, Any]) -> str:
    header, rows = table_rows(summary)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(stat: dict[str, float]) -> str:
    if math.isnan(stat["mean"]):
        return "n/a"
    if stat["n"] <= 1:
        return f"{100 * stat['mean']:.1f}"
    return f"{100 * stat['mean']:.1f} ({100 * stat['low']:.1f}-{100 * stat['high']:.1f})"


def plot_fronts(summary: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Two figures: clean accuracy against trojan success, and against held-out robust accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    panels = [
        ("clean_vs_trojan_success", "mean_asr", "mean trojan attack success rate (lower is better)"),
        ("clean_vs_heldout_robustness", "heldout_acc", "held-out robust accuracy (higher is better)"),
    ]
    titles = {
        "clean_vs_trojan_success": "Clean accuracy vs trojan success",
        "clean_vs_heldout_robustness": "Clean accuracy vs robustness to held-out attacks",
    }
    families = sorted({s.get("family", s["setting"]) for s in summary["settings"] if s["setting"] != REFERENCE})
    colours = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(families)}
    for key, metric, ylabel in panels:
        fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=150)
        front = summary["pareto"][key]
        by_name = {s["setting"]: s for s in summary["settings"]}
        for family in families:
            members = [s for s in summary["settings"] if s.get("family") == family and s["setting"] != REFERENCE]
            _errorbars(ax, members, metric, colours[family], family)
        if REFERENCE in by_name:
            _errorbars(ax, [by_name[REFERENCE]], metric, "black", "poisoned (no fine-tuning)", marker="X")
        xs = [by_name[n]["metrics"]["clean_acc"]["mean"] for n in front]
        ys = [by_name[n]["metrics"][metric]["mean"] for n in front]
        ax.plot(xs, ys, color="0.3", linestyle="--", linewidth=1, zorder=0, label="Pareto front")
        for name, x, y in zip(front, xs, ys, strict=True):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=6)
        ax.set_xlabel("clean accuracy")
        ax.set_ylabel(ylabel)
        seeds = max((len(s["seeds"]) for s in summary["settings"]), default=0)
        ax.set_title(f"{titles[key]}: mean and 95% interval over {seeds} seeds", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
        fig.tight_layout()
        path = out_dir / f"pareto_{key}.png"
        fig.savefig(path)
        plt.close(fig)
        paths[key] = path
    return paths


def _errorbars(ax: Any, members: list[dict[str, Any]], metric: str, colour: Any, label: str, marker: str = "o") -> None:
    if not members:
        return
    xs = [m["metrics"]["clean_acc"] for m in members]
    ys = [m["metrics"][metric] for m in members]
    ax.errorbar(
        [x["mean"] for x in xs],
        [y["mean"] for y in ys],
        xerr=[[x["mean"] - x["low"] for x in xs], [x["high"] - x["mean"] for x in xs]],
        yerr=[[y["mean"] - y["low"] for y in ys], [y["high"] - y["mean"] for y in ys]],
        fmt=marker,
        color=colour,
        markersize=4,
        capsize=2,
        linewidth=0.8,
        label=label,
    )
