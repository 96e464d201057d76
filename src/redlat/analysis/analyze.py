"""`redlat analyze`: embed a run's test cases, cluster the failing ones, find the phrases that go with failures.

As in Perez et al. (2022), failing test cases are clustered by meaning (here sentence embeddings rather than averaged
word vectors) and each cluster is described by its most typical members and its distinctive phrases; separately,
phrases over-represented in failing vs passing test cases are ranked by weighted log-odds (see `phrases`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from redlat.analysis.clusters import NOISE, Clustering, hdbscan, kmeans, map_2d, nearest_centre
from redlat.analysis.phrases import enriched_phrases
from redlat.analysis.result import Analysis, ClusterInfo, Point, Representative
from redlat.analysis.stored import save_analysis
from redlat.config import AnalyzeConfig
from redlat.errors import ConfigError
from redlat.records import Attempt
from redlat.store import RunStore
from redlat.summary import wilson_interval

log = logging.getLogger(__name__)

Embed = Callable[[Sequence[str]], np.ndarray]


def analyze_run(
    run_dir: str | Path, cfg: AnalyzeConfig | None = None, *, embedder: Embed | None = None, store_result: bool = True
) -> Analysis:
    """Analyse a stored run and (by default) store the result in its database. `embedder` replaces the configured
    sentence-transformers model (any callable texts -> rows of vectors)."""
    cfg = cfg or AnalyzeConfig()
    with RunStore(run_dir) as store:
        info = store.run_info()
        attempts = list(store.attempts())
        if not attempts:
            raise ConfigError(f"{run_dir} holds no test cases yet: nothing to analyse")
        threshold = float(info.config["threshold"]) if cfg.threshold is None else cfg.threshold
        if embedder is None:
            from redlat.analysis.embeddings import load_embedder

            embedder = load_embedder(cfg.embedder, device=cfg.device, batch_size=cfg.batch_size)
        source = str(getattr(embedder, "source", cfg.embedder))
        vectors = _normalised(np.asarray(embedder([a.test_case for a in attempts]), dtype=np.float64))
        analysis = analyze_vectors(attempts, vectors, cfg, threshold=threshold, run_id=info.run_id,
                                   embedder_source=source)
        if store_result:
            analysis_id = save_analysis(store, analysis)
            analysis = dataclasses.replace(analysis, analysis_id=analysis_id)
    return analysis


def analyze_vectors(
    attempts: Sequence[Attempt],
    vectors: np.ndarray,
    cfg: AnalyzeConfig,
    *,
    threshold: float,
    run_id: str = "",
    embedder_source: str = "",
) -> Analysis:
    """The analysis itself, from attempts and their (normalised) embeddings."""
    texts = [a.test_case for a in attempts]
    scores = np.array([a.score for a in attempts], dtype=float)
    failing = scores > threshold
    n_failing = int(failing.sum())
    notes: list[str] = []
    if n_failing >= cfg.min_failures:
        scope, members = "failing", np.flatnonzero(failing)
    else:
        scope, members = "all", np.arange(len(attempts))
        notes.append(
            f"only {n_failing} of {len(attempts)} test cases fail (score > {threshold:g}), fewer than "
            f"min_failures = {cfg.min_failures}: all test cases were clustered, and each cluster's failure rate "
            f"says where the failures lie"
        )
    clustering = _cluster(vectors[members], cfg)
    clustering = _largest_first(clustering)
    nearest = nearest_centre(vectors, clustering.centres)
    coords, map_method = map_2d(vectors, method=cfg.map, seed=cfg.seed)

    assigned = np.full(len(attempts), NOISE, dtype=int)
    assigned[members] = clustering.labels
    clusters = []
    for c in range(clustering.k):
        is_member = assigned == c
        in_cluster = np.flatnonzero(is_member)
        near = nearest == c
        n_near, n_near_fail = int(near.sum()), int((near & failing).sum())
        sims = vectors[in_cluster] @ clustering.centres[c]
        reps = [
            Representative(index=attempts[i].index, test_case=texts[i], reply=attempts[i].reply,
                           score=float(scores[i]), failing=bool(failing[i]), similarity=float(s))
            for i, s in sorted(zip(in_cluster.tolist(), sims.tolist(), strict=True), key=lambda t: -t[1])
        ][: cfg.representatives]
        distinctive = enriched_phrases(texts, is_member.tolist(), ngram_max=cfg.ngram_max,
                                       min_count=cfg.min_count, top=cfg.cluster_phrases) if cfg.cluster_phrases else []
        clusters.append(ClusterInfo(
            cluster=c,
            size=len(in_cluster),
            n_failing_members=int(failing[in_cluster].sum()),
            mean_score=float(scores[in_cluster].mean()) if len(in_cluster) else 0.0,
            n_nearest=n_near,
            n_nearest_failing=n_near_fail,
            failure_rate=n_near_fail / n_near if n_near else None,
            failure_rate_ci95=wilson_interval(n_near_fail, n_near),
            representatives=reps,
            phrases=[p.to_dict() for p in distinctive],
        ))
    phrases = enriched_phrases(texts, failing.tolist(), ngram_max=cfg.ngram_max, min_count=cfg.min_count,
                               top=cfg.top_phrases)
    if n_failing and not phrases:
        notes.append("no phrase is over-represented in failing test cases (too few failures or too few repeats)")
    points = [
        Point(index=a.index, failing=bool(failing[i]), score=float(scores[i]),
              cluster=None if assigned[i] == NOISE else int(assigned[i]),
              nearest=None if nearest[i] == NOISE else int(nearest[i]),
              x=float(coords[i, 0]), y=float(coords[i, 1]))
        for i, a in enumerate(attempts)
    ]
    return Analysis(
        run_id=run_id,
        threshold=threshold,
        embedder=cfg.embedder,
        embedder_source=embedder_source,
        n_cases=len(attempts),
        n_failing=n_failing,
        scope=scope,
        algorithm=clustering.algorithm if len(members) else "none",
        k=clustering.k,
        silhouette=clustering.silhouette,
        silhouette_by_k=clustering.silhouette_by_k,
        map_method=map_method,
        clusters=clusters,
        phrases=[p.to_dict() for p in phrases],
        points=points,
        notes=notes,
        config=cfg.model_dump(mode="json"),
        created_at=time.time(),
    )


def _cluster(vectors: np.ndarray, cfg: AnalyzeConfig) -> Clustering:
    if cfg.algorithm == "hdbscan":
        return hdbscan(vectors, min_cluster_size=cfg.min_cluster_size)
    return kmeans(vectors, k=cfg.k, k_min=cfg.k_min, k_max=cfg.k_max, seed=cfg.seed)


def _largest_first(clustering: Clustering) -> Clustering:
    """Renumber clusters by size, largest first (ties by old number), keeping noise as it is."""
    sizes = np.array([(clustering.labels == c).sum() for c in range(clustering.k)])
    order = np.argsort(-sizes, kind="stable")
    new_of_old = np.empty(clustering.k, dtype=int)
    new_of_old[order] = np.arange(clustering.k)
    labels = np.where(clustering.labels == NOISE, NOISE, new_of_old[np.maximum(clustering.labels, 0)])
    return Clustering(labels, clustering.centres[order], clustering.algorithm, clustering.silhouette,
                      clustering.silhouette_by_k)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    if vectors.ndim != 2:
        raise ConfigError(f"the embedder returned an array of shape {vectors.shape}; expected (cases, dimensions)")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
