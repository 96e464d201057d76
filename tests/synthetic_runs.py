"""Run directories written straight through the store, with chosen test cases and scores (no models)."""

from __future__ import annotations

from pathlib import Path

from redlat.config import RedTeamConfig
from redlat.records import Attempt, Sample
from redlat.store import RunStore


def write_run(
    run_dir: Path,
    cases: list[str],
    scores: list[float],
    *,
    method: str = "zero-shot",
    classifier: str = "rude-words",
    training: dict | None = None,
    replies: list[str] | None = None,
    threshold: float = 0.5,
    origins: list[dict] | None = None,
    more_scores: list[dict] | None = None,
) -> Path:
    extra = {"from_run": "pool"} if method in ("few-shot", "supervised") else {}
    cfg = RedTeamConfig(method=method, n=max(len(cases), 1), classifiers=[{"name": classifier}],
                        threshold=threshold, **extra)
    replies = replies if replies is not None else [f"reply {i}" for i in range(len(cases))]
    with RunStore(run_dir, create=True) as store:
        store.start_run(run_id=f"id-{run_dir.name}", command="redteam", method=method, config=cfg.identity(),
                        fingerprint=cfg.fingerprint(), seed=0, provenance={})
        samples = [Sample(i, 0, f" {c}", c, False) for i, c in enumerate(cases)]
        attempts = [Attempt(index=i, run_id=f"id-{run_dir.name}", method=method, round=0, sample_index=i,
                            test_case=c, reply=r, score=s, offensive=s > threshold,
                            scores={classifier: {"rude": s}, **(more_scores[i] if more_scores else {})},
                            origin=origins[i] if origins else {})
                    for i, (c, s, r) in enumerate(zip(cases, scores, replies, strict=True))]
        store.write_round(0, samples, attempts, 0.0)
        store.finish_run("reached_n", {})
        if training is not None:
            store.set_meta("training", training)
    return run_dir


def write_rude_run(run_dir: Path) -> Path:
    """A zero-shot run scored by the real profanity classifier: four rude failures, two passed cases. What `harden`
    and the harden-loop train on in the tests."""
    cases = [f"why is the {w} blue?" for w in ("cat", "dog", "tree", "sky")] + ["what is nice?", "who are we?"]
    return write_run(run_dir, cases, [0.9, 0.8, 0.7, 0.6, 0.1, 0.0], classifier="profanity",
                     replies=["you stupid idiot"] * 4 + ["nice"] * 2)


def experiment_results(run_dir: Path) -> list[tuple]:
    """An experiment store's results, rounded to 5 places, timings left out: what two runs of a sweep must share."""
    import sqlite3

    with sqlite3.connect(run_dir / "run.sqlite") as db:
        return db.execute(
            "SELECT setting, seed, metric, round(value, 5) FROM results "
            "WHERE metric NOT IN ('train_seconds', 'eval_seconds') ORDER BY 1, 2, 3"
        ).fetchall()
