"""What a run found: yields, the offensive-reply rate with a 95% Wilson interval, the top-scoring test cases."""

from __future__ import annotations

import math
from typing import Any

from redlat.store import RunStore

Z95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion; (0, 1) when there are no trials."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the edges, free of rounding error
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return (low, high)


def summarize(
    store: RunStore,
    *,
    threshold: float | None = None,
    top: int = 10,
    include_excluded: bool = False,
    metrics: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A JSON-able summary of a run; `threshold` recounts failures at another cut-off. Attempts a method marked as
    excluded (few-shot copies of pool cases) are left out of the rates unless `include_excluded`; `metrics` adds run
    metrics by name to the defaults and the method's own (redlat.metrics)."""
    from redlat.metrics import RunView, compute_metrics, metrics_for, split_excluded
    from redlat.sections import compute_sections

    info = store.run_info()
    cfg = info.config
    thr = float(cfg["threshold"]) if threshold is None else threshold
    counts = store.counts()
    every = list(store.attempts(order="score"))
    attempts, excluded = split_excluded(every, include_excluded)
    training = store.get_meta("training")
    n_offensive = sum(a.score > thr for a in attempts)
    low, high = wilson_interval(n_offensive, len(attempts))
    deciding = deciding_classifier(cfg, info.provenance)
    sections = compute_sections(attempts, thr)  # groups, turns, leaks: None unless the run has them
    view = RunView(attempts=attempts, excluded=excluded, threshold=thr, config=cfg, training=training,
                   extra=dict(sections))  # the metrics that summarise a section read it, not compute it again
    return {
        "run_id": info.run_id,
        "run_dir": str(store.run_dir),
        "method": info.method,
        "status": info.status,
        "stop_reason": info.stop_reason,
        "n_requested": cfg["n"],
        "max_samples": cfg["max_samples"] if cfg["max_samples"] is not None else 4 * cfg["n"],
        "n_samples": counts.n_samples,
        "n_valid": counts.n_valid,
        "n_unique": counts.n_unique,
        "n_duplicates": counts.n_valid - counts.n_unique,
        "n_excluded": len(excluded),
        "n_counted": len(attempts),
        "harm": run_harm(info.provenance),
        "n_offensive": n_offensive,
        "offensive_rate": n_offensive / len(attempts) if attempts else 0.0,
        "offensive_rate_ci95": [low, high],
        "threshold": thr,
        "classifier": deciding["name"],
        "classifier_label": deciding["label"],
        "classifiers": [c["name"] for c in cfg["classifiers"]],
        "red": red_description(info.method, cfg),
        "target": cfg["target"],
        "chat_format": info.provenance.get("models", {}).get("target", {}).get("chat_format"),
        "seed": info.seed,
        "git_commit": info.provenance.get("git", {}).get("commit"),
        "timings": info.timings,
        "execution": store.get_meta("execution") or [],
        "training": training,
        "training_brief": training_brief(training),
        "metrics": compute_metrics(view, metrics_for(info.method, metrics,
                                                     scorers=[c["name"] for c in cfg["classifiers"]])),
        **sections,
        "top": [
            {"index": a.index, "test_case": a.test_case, "reply": a.reply, "score": a.score}
            for a in attempts[:top]
        ],
    }


def red_description(method: str, cfg: dict[str, Any]) -> str:
    """The red LM of a stored run, or, for a method without one, the method and its source (a prompt set's)."""
    from redlat.errors import ConfigError
    from redlat.red_team.method import method_class

    try:
        needs_red = method_class(method).uses_red(cfg.get("method_settings") or {})
    except ConfigError:  # a plugin not installed here: show the red LM the config names
        needs_red = True
    if needs_red:
        return str(cfg["red"])
    source = (cfg.get("method_settings") or cfg.get("prompts") or {}).get("source")  # "prompts": runs stored before
    return f"none ({method}{f': {source}' if source else ''})"


def run_harm(provenance: dict[str, Any]) -> str:
    """What a run's deciding scorer measures (runs from before harms were recorded measured offensiveness)."""
    classifiers = provenance.get("models", {}).get("classifiers", [])
    return str(classifiers[0].get("harm", "offensive")) if classifiers else "offensive"


def deciding_classifier(config: dict[str, Any], provenance: dict[str, Any]) -> dict[str, Any]:
    """The scorer that decided a run's failures (name, label, and `own`: a judge its method brought, such as the
    leakage method's, rather than one of the config's classifiers). Runs from before provenance recorded the
    scorers were decided by the config's first classifier."""
    spec = config["classifiers"][0]
    recorded = provenance.get("models", {}).get("classifiers", [])
    if not recorded:
        return {"name": spec["name"], "label": spec.get("label"), "own": False}
    first = recorded[0]
    name = first.get("name", spec["name"])
    own = name not in {c["name"] for c in config["classifiers"]}
    return {"name": name, "label": first.get("label", spec.get("label")), "own": own}


def training_brief(training: dict[str, Any] | None) -> str | None:
    """One line on how a supervised or RL run's red LM was trained (None for other runs)."""
    if not training:
        return None
    if training.get("method") == "supervised":
        before = training.get("loss_before", {}).get("validation")
        after = training.get("loss_after", {}).get("validation")
        loss = f"; validation loss {before:.3f} -> {after:.3f}" if before is not None and after is not None else ""
        return f"{training.get('selection')}{loss}"
    first, last = training.get("mean_reward_first_10"), training.get("mean_reward_last_10")
    curve = f"; mean reward {first:.3f} (first 10) -> {last:.3f} (last 10)" if first is not None else ""
    return f"{training.get('steps')} {training.get('algorithm', 'RL')} steps{curve}"
