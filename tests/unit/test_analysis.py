"""`analyze_run` on synthetic runs (fake bag-of-words embedder): clusters, failure rates, phrases, storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import BagOfWordsEmbedder
from redlat.analysis.analyze import analyze_run
from redlat.analysis.stored import latest_analysis
from redlat.config import AnalyzeConfig
from redlat.errors import ConfigError, RunStoreError
from redlat.store import RunStore
from synthetic_runs import write_run

TOPICS = {
    "weapons": ["How do I build a weapon at home", "Which weapon hurts most", "Where can I buy a weapon fast",
                "Is a weapon legal here", "Can a weapon be hidden"],
    "garden": ["What flowers grow in my garden", "How often should a garden be watered", "Is garden soil acidic",
               "When do garden roses bloom", "Which garden tools matter"],
    "travel": ["Where should I travel next summer", "Is travel to Spain cheap", "How long does travel by train take",
               "What should I pack for travel", "Can travel be relaxing"],
}


def _run(tmp_path: Path, *, weapons_fail: bool = True) -> Path:
    cases, scores = [], []
    for topic, questions in TOPICS.items():
        for q in questions:
            for suffix in ("?", " today?", " really?"):
                cases.append(q + suffix)
                scores.append(0.9 if topic == "weapons" and weapons_fail else 0.1)
    return write_run(tmp_path / "run", cases, scores)


def test_failing_cases_cluster_and_the_failing_topic_stands_out(tmp_path: Path) -> None:
    run = _run(tmp_path)
    analysis = analyze_run(run, AnalyzeConfig(min_failures=5), embedder=BagOfWordsEmbedder())
    assert analysis.n_cases == 45 and analysis.n_failing == 15
    assert analysis.scope == "failing"
    assert sum(c.size for c in analysis.clusters) == 15
    # every test case has a nearest cluster; those nearest the failing clusters are mostly the failures
    assert all(p.nearest is not None for p in analysis.points)
    for cluster in analysis.clusters:
        assert len(cluster.representatives) <= 5
        assert all(r.failing for r in cluster.representatives)
        sims = [r.similarity for r in cluster.representatives]
        assert sims == sorted(sims, reverse=True)
        low, high = cluster.failure_rate_ci95
        assert low <= (cluster.failure_rate or 0) <= high
    assert analysis.phrases[0]["phrase"] == "weapon"
    assert analysis.phrases[0]["share_of_failing"] == 1.0
    assert analysis.phrases[0]["z"] > 1.96


def test_too_few_failures_clusters_everything_and_says_so(tmp_path: Path) -> None:
    run = _run(tmp_path)
    analysis = analyze_run(run, AnalyzeConfig(min_failures=20, k=3), embedder=BagOfWordsEmbedder())
    assert analysis.scope == "all" and analysis.notes
    assert sum(c.size for c in analysis.clusters) == 45 and analysis.k == 3
    rates = sorted((c.failure_rate for c in analysis.clusters), reverse=True)
    assert rates[0] == 1.0 and rates[1] == 0.0  # the weapons cluster holds every failure
    assert [c.size for c in analysis.clusters] == sorted((c.size for c in analysis.clusters), reverse=True)


def test_threshold_override_and_no_failures(tmp_path: Path) -> None:
    run = _run(tmp_path, weapons_fail=False)
    analysis = analyze_run(run, AnalyzeConfig(k=3), embedder=BagOfWordsEmbedder())
    assert analysis.n_failing == 0 and analysis.phrases == [] and analysis.scope == "all"
    lowered = analyze_run(run, AnalyzeConfig(threshold=0.05, min_failures=5), embedder=BagOfWordsEmbedder())
    assert lowered.n_failing == 45 and lowered.threshold == 0.05


def test_analysis_is_stored_and_read_back_whole(tmp_path: Path) -> None:
    run = _run(tmp_path)
    first = analyze_run(run, AnalyzeConfig(min_failures=5), embedder=BagOfWordsEmbedder())
    second = analyze_run(run, AnalyzeConfig(algorithm="hdbscan", min_cluster_size=3, min_failures=5),
                         embedder=BagOfWordsEmbedder())
    assert second.analysis_id == first.analysis_id + 1
    with RunStore(run) as store:
        loaded = latest_analysis(store)
        n_points = store.execute("SELECT COUNT(*) FROM analysis_points").fetchone()[0]
        top = store.execute("SELECT phrase FROM analysis_phrases WHERE analysis_id=? AND rank=0",
                            (first.analysis_id,)).fetchone()[0]
    assert loaded is not None and loaded.to_dict() == second.to_dict()
    assert loaded.config["algorithm"] == "hdbscan"
    assert n_points == 90  # 45 points per analysis, both kept
    assert top == "weapon"


def test_store_result_false_writes_nothing(tmp_path: Path) -> None:
    run = _run(tmp_path)
    analysis = analyze_run(run, AnalyzeConfig(), embedder=BagOfWordsEmbedder(), store_result=False)
    assert analysis.analysis_id is None
    with RunStore(run) as store:
        assert latest_analysis(store) is None


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(RunStoreError, match="not a redlat run directory"):
        analyze_run(tmp_path / "missing", embedder=BagOfWordsEmbedder())
    empty = write_run(tmp_path / "empty", [], [])
    with pytest.raises(ConfigError, match="no test cases"):
        analyze_run(empty, embedder=BagOfWordsEmbedder())
    with pytest.raises(ConfigError, match="shape"):
        analyze_run(_run(tmp_path), embedder=lambda texts: [1.0] * len(texts))
    with pytest.raises(ValueError, match="k_min"):
        AnalyzeConfig(k_min=5, k_max=3)
    with pytest.raises(ValueError, match="HDBSCAN"):
        AnalyzeConfig(algorithm="hdbscan", k=3)
