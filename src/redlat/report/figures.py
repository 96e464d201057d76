"""The report's plots, drawn with matplotlib (Agg) and embedded as PNG data URIs, so the page needs no network.

No model text is ever drawn into a plot: labels are numbers, method names and run-directory names.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

_CLUSTER_COLOURS = "tab10"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_data_uri(fig: Any, dpi: int = 130) -> str:
    """Render a figure to a base64 PNG data URI and close it."""
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def score_histogram(scores: Sequence[float], threshold: float, *, bins: int = 40, classifier: str = "") -> str:
    """Distribution of the deciding classifier's scores, log-scaled counts, with the threshold marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    edges = [i / bins for i in range(bins + 1)]
    passing = [s for s in scores if s <= threshold]
    failing = [s for s in scores if s > threshold]
    ax.hist([passing, failing], bins=edges, stacked=True, color=["#7a9cc6", "#d1495b"],
            label=[f"not offensive ({len(passing)})", f"offensive ({len(failing)})"])
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{classifier} score of the reply" if classifier else "score of the reply")
    ax.set_ylabel("test cases (log scale)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return to_data_uri(fig)


def group_bars(rows: Sequence[dict[str, Any]], harm: str = "offensive") -> str:
    """The failure rate of each group of people as a bar, highest first, with its 95% Wilson interval."""
    plt = _pyplot()
    ordered = sorted(rows, key=lambda r: r["rate"])
    fig, ax = plt.subplots(figsize=(6.0, 0.6 + 0.32 * len(ordered)))
    rates = [100 * r["rate"] for r in ordered]
    errors = [[100 * (r["rate"] - r["low"]) for r in ordered], [100 * (r["high"] - r["rate"]) for r in ordered]]
    ax.barh([r["group"] for r in ordered], rates, xerr=errors, color="#d1495b", ecolor="#333333", capsize=3)
    ax.set_xlabel(f"{harm} replies, % (95% Wilson interval)")
    ax.set_xlim(0, min(100.0, max(100 * r["high"] for r in ordered) * 1.1 + 1))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return to_data_uri(fig)


def turn_curve(rows: Sequence[dict[str, Any]], harm: str = "offensive") -> str:
    """The failure rate at each dialogue turn with its 95% Wilson interval."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    turns = [r["turn"] for r in rows]
    rates = [100 * r["rate"] for r in rows]
    errors = [[100 * (r["rate"] - r["low"]) for r in rows], [100 * (r["high"] - r["rate"]) for r in rows]]
    ax.errorbar(turns, rates, yerr=errors, marker="o", color="#d1495b", ecolor="#333333", capsize=3)
    ax.set_xticks(turns)
    ax.set_xlabel("turn of the dialogue")
    ax.set_ylabel(f"{harm} replies, %")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return to_data_uri(fig)


def cluster_map(points: Sequence[dict[str, Any]], k: int, method: str) -> str:
    """The 2-D map of all test cases: colour = nearest cluster, cross = failing."""
    plt = _pyplot()
    cmap = plt.get_cmap(_CLUSTER_COLOURS if k <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(6.0, 4.6))
    for cluster in range(k):
        members = [p for p in points if p["nearest"] == cluster]
        passing = [p for p in members if not p["failing"]]
        failing = [p for p in members if p["failing"]]
        colour = cmap(cluster % cmap.N)
        ax.scatter([p["x"] for p in passing], [p["y"] for p in passing], s=14, color=colour, alpha=0.55,
                   label=f"cluster {cluster}")
        ax.scatter([p["x"] for p in failing], [p["y"] for p in failing], s=46, color=colour, marker="X",
                   edgecolors="black", linewidths=0.6)
    others = [p for p in points if p["nearest"] is None]
    if others:
        ax.scatter([p["x"] for p in others], [p["y"] for p in others], s=12, color="#999999", alpha=0.5)
    ax.scatter([], [], s=46, color="white", marker="X", edgecolors="black", label="failing (X)")
    ax.set_title({"tsne": "t-SNE", "pca": "PCA"}.get(method, "Map") + " of the test cases' sentence embeddings")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    return to_data_uri(fig)


def comparison_plot(rows: Sequence[dict[str, Any]]) -> str:
    from redlat.compare import comparison_figure

    return to_data_uri(comparison_figure(rows))


def reward_curve(steps: Sequence[dict[str, Any]]) -> str | None:
    """RL training: mean reward per step, with a 10-step moving mean."""
    usable = [s for s in steps if s.get("step", 0) > 0 and s.get("mean_reward") is not None]
    if len(usable) < 2:
        return None
    plt = _pyplot()
    x = [s["step"] for s in usable]
    reward = [s["mean_reward"] for s in usable]
    fig, ax = plt.subplots(figsize=(6.0, 3.2))
    ax.plot(x, reward, color="#7a9cc6", linewidth=1, label="mean reward")
    window = min(10, len(reward))
    smooth = [sum(reward[max(0, i - window + 1): i + 1]) / len(reward[max(0, i - window + 1): i + 1])
              for i in range(len(reward))]
    ax.plot(x, smooth, color="#1d3557", linewidth=2, label=f"{window}-step moving mean")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("reward  -log(1 - score)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return to_data_uri(fig)
