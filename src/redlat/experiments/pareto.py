"""An experiment's results, from the store: mean and 95% interval over seeds, Pareto fronts, table, figures.

The interval is Student's t over seeds (mean +- t(0.975, n - 1) * sd / sqrt(n)); with one seed it is the point.
Fronts: the settings no other setting beats on both of a front's axes (the x axis is what the defence keeps, higher
is better; the y axis a failure, lower is better, or a robustness, higher is better). Reference settings (the models
before any defence) are shown and not on a front. What the axes and columns are depends on the experiment: a
`Layout` says it, built from the run's config by the experiment's own function (`layout_for`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from redlat.adversarial.attack_specs import attack_names
from redlat.experiments.layout import Layout
from redlat.store import RunStore


def transfer_matrix(summary: dict[str, Any]) -> dict[str, Any] | None:
    """Each setting's mean robust accuracy under each evaluation attack (rows: the model before any defence, then the
    defences; columns: the attacks, held-out families marked) and, where a `none` defence ran, each cell's change
    against it. None for an experiment without evaluation attacks."""
    config = summary["config"]
    attacks = attack_names(config.get("eval_attacks", []))
    settings = [s for s in summary["settings"] if any(f"robust:{a}" in s["metrics"] for a in attacks)]
    if not attacks or not settings:
        return None
    held_out = set(config.get("held_out", []))

    def mean(s: dict[str, Any], attack: str) -> float:
        stat = s["metrics"].get(f"robust:{attack}")
        return stat["mean"] if stat is not None else math.nan

    accuracy = [[mean(s, a) for a in attacks] for s in settings]
    plain = next((row for s, row in zip(settings, accuracy, strict=True) if s["setting"] == "none"), None)
    return {
        "rows": [s["setting"] for s in settings],
        "columns": attacks,
        "held_out": [a.split(":")[0] in held_out for a in attacks],
        "accuracy": accuracy,
        "change_against": "none" if plain is not None else None,
        "change": [[v - p for v, p in zip(row, plain, strict=True)] for row in accuracy] if plain is not None else None,
    }


def plot_transfer(summary: dict[str, Any], out_dir: Path) -> Path | None:
    """The transfer matrix as a heatmap (transfer_matrix.png): each cell's robust accuracy in percent, coloured by
    its change against plain fine-tuning (`none`) where that ran, else by the accuracy itself."""
    matrix = transfer_matrix(summary)
    if matrix is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    accuracy = 100 * np.array(matrix["accuracy"], dtype=float)
    rows, columns = matrix["rows"], matrix["columns"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(columns), 1.2 + 0.42 * len(rows)), dpi=150)
    if matrix["change"] is not None:
        colour = 100 * np.array(matrix["change"], dtype=float)
        limit = max(float(np.nanmax(np.abs(colour))), 1.0)
        image = ax.imshow(colour, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        label = "change in robust accuracy against none (points)"
    else:
        image = ax.imshow(accuracy, cmap="viridis", vmin=0, vmax=100, aspect="auto")
        label = "robust accuracy (%)"
    shade = np.abs(colour) / limit if matrix["change"] is not None else np.abs(accuracy - 50) / 50
    for i in range(len(rows)):
        for j in range(len(columns)):
            if not math.isnan(accuracy[i, j]):
                ink = "white" if shade[i, j] > 0.6 else "black"  # readable on the darkest cells
                ax.text(j, i, f"{accuracy[i, j]:.0f}", ha="center", va="center", fontsize=6, color=ink)
    ax.set_xticks(range(len(columns)), [f"{c}*" if h else c for c, h in zip(columns, matrix["held_out"],
                                                                            strict=True)],
                  rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    seeds = max((len(s["seeds"]) for s in summary["settings"]), default=0)
    ax.set_title(f"Robust accuracy (%) under each attack, mean over {seeds} seed{'s' if seeds != 1 else ''}"
                 " (* held out)", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02).set_label(label, fontsize=7)
    fig.tight_layout()
    path = out_dir / "transfer_matrix.png"
    fig.savefig(path)
    plt.close(fig)
    return path


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


def _metrics(values: dict[str, list[float]], lay: Layout) -> dict[str, dict[str, float]]:
    """Each metric's mean and interval over seeds. A metric stored with its own interval (METRIC@low, METRIC@high,
    e.g. a Wilson interval from counts) keeps that interval when there is one seed."""
    out = {}
    for metric, vals in sorted(values.items()):
        if metric.endswith(("@low", "@high")):
            continue
        stat = interval(vals, None if metric in lay.unbounded else (0.0, 1.0))
        low, high = values.get(f"{metric}@low"), values.get(f"{metric}@high")
        if stat["n"] == 1 and low and high:
            stat.update(low=low[0], high=high[0], own_interval=1.0)
        out[metric] = stat
    return out


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
    lay = layout_for(info.command, info.config)
    details = store.result_settings()
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    seeds: dict[str, set[int]] = defaultdict(set)
    for row in store.results():
        values[row["setting"]][row["metric"]].append(row["value"])
        seeds[row["setting"]].add(row["seed"])
    references = [name for name, _ in lay.references]
    order = [*references, *lay.defence_names]
    settings = []
    for name in [n for n in order if n in values] + sorted(set(values) - set(order)):
        settings.append(
            {
                "setting": name,
                **{k: v for k, v in details.get(name, {}).items() if k in ("kind", "family", "label")},
                "seeds": sorted(seeds[name]),
                "metrics": _metrics(values[name], lay),
            }
        )
    defended = {s["setting"]: s["metrics"] for s in settings if s["setting"] not in references}
    fronts = {}
    for front in lay.fronts:
        points = {
            n: (m[lay.x]["mean"], m[front.y]["mean"]) for n, m in defended.items() if lay.x in m and front.y in m
        }
        fronts[front.key] = pareto_front(points, higher_y_is_better=front.higher_y_is_better)
    summary = {
        "experiment": lay.experiment,
        "run_dir": str(store.run_dir),
        "status": info.status,
        "config": info.config,
        "trojans": [t["name"] for t in info.config.get("trojans", [])],
        "held_out_families": list(info.config.get("held_out", [])),
        "settings": settings,
        "pareto": fronts,
        # settings tested against each other, where the experiment stores such tests (harden-loop)
        "pairs": store.get_meta("defence_pairs") or [],
    }
    from redlat.experiments.registry import for_command

    if for_command(info.command).transfer_matrix:
        summary["transfer"] = transfer_matrix(summary)
    return summary


def layout_of(summary: dict[str, Any]) -> Layout:
    return layout_for(f"experiment {summary['experiment']}", summary["config"])


def layout_for(command: str, config: dict[str, Any]) -> Layout:
    """The layout of a stored experiment, from its command and config (the experiment's own layout function)."""
    from redlat.experiments.registry import for_command

    return for_command(command).layout(config)


def table_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows for a terminal or Markdown table: mean (low-high), rates in percent; the last column holds the
    marks of the fronts a setting is on."""
    lay = layout_of(summary)
    fronts = summary["pareto"]
    header = ["setting", *[c.header for c in lay.columns], "front"]
    rows = []
    for s in summary["settings"]:
        m = s["metrics"]
        marks = "".join(f.mark for f in lay.fronts if s["setting"] in fronts.get(f.key, []))
        cells = [_cell(m.get(c.metric), c.percent, c.digits) for c in lay.columns]
        rows.append([s["setting"], *cells, marks])
    return header, rows


def caption(summary: dict[str, Any]) -> str:
    return layout_of(summary).caption


def markdown_table(summary: dict[str, Any]) -> str:
    header, rows = table_rows(summary)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(stat: dict[str, float] | None, percent: bool, digits: int = 2) -> str:
    if stat is None or math.isnan(stat["mean"]):
        return "n/a"
    scale, digits = (100, 1) if percent else (1, digits)
    if stat["n"] <= 1 and not stat.get("own_interval"):
        return f"{scale * stat['mean']:.{digits}f}"
    return f"{scale * stat['mean']:.{digits}f} ({scale * stat['low']:.{digits}f}-{scale * stat['high']:.{digits}f})"


def plot_fronts(summary: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """One figure per front: what the defence keeps (x) against a failure or a robustness (y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lay = layout_of(summary)
    references = dict(lay.references)
    paths = {}
    families = sorted({s.get("family", s["setting"]) for s in summary["settings"] if s["setting"] not in references})
    colours = {f: plt.get_cmap("tab10")(i % 10) for i, f in enumerate(families)}
    by_name = {s["setting"]: s for s in summary["settings"]}
    for front in lay.fronts:
        fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=150)
        names = summary["pareto"][front.key]
        for family in families:
            members = [s for s in summary["settings"] if s.get("family") == family and s["setting"] not in references]
            _errorbars(ax, members, lay.x, front.y, colours[family], family)
        for i, (name, label) in enumerate(lay.references):
            if name in by_name:
                _errorbars(ax, [by_name[name]], lay.x, front.y, str(0.45 * i), label, marker="X")
        xs = [by_name[n]["metrics"][lay.x]["mean"] for n in names]
        ys = [by_name[n]["metrics"][front.y]["mean"] for n in names]
        ax.plot(xs, ys, color="0.3", linestyle="--", linewidth=1, zorder=0, label="Pareto front")
        for name, x, y in zip(names, xs, ys, strict=True):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=6)
        ax.set_xlabel(lay.x_label)
        ax.set_ylabel(front.y_label)
        seeds = max((len(s["seeds"]) for s in summary["settings"]), default=0)
        how = lay.interval or f"mean and 95% interval over {seeds} seed{'s' if seeds != 1 else ''}"
        ax.set_title(f"{front.title}: {how}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
        fig.tight_layout()
        path = out_dir / f"pareto_{front.key}.png"
        fig.savefig(path)
        plt.close(fig)
        paths[front.key] = path
    return paths


def _errorbars(
    ax: Any, members: list[dict[str, Any]], x: str, y: str, colour: Any, label: str, marker: str = "o"
) -> None:
    members = [m for m in members if x in m["metrics"] and y in m["metrics"]]
    if not members:
        return
    xs = [m["metrics"][x] for m in members]
    ys = [m["metrics"][y] for m in members]
    ax.errorbar(
        [v["mean"] for v in xs],
        [v["mean"] for v in ys],
        xerr=[[v["mean"] - v["low"] for v in xs], [v["high"] - v["mean"] for v in xs]],
        yerr=[[v["mean"] - v["low"] for v in ys], [v["high"] - v["mean"] for v in ys]],
        fmt=marker,
        color=colour,
        markersize=4,
        capsize=2,
        linewidth=0.8,
        label=label,
    )
