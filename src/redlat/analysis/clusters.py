"""Clustering sentence embeddings (rows L2-normalised): k-means with k chosen by silhouette, or HDBSCAN.

Both come from scikit-learn. Distances are cosine (1 - dot product of normalised rows); k-means on normalised rows
is the usual stand-in for spherical k-means.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NOISE = -1


@dataclass(frozen=True)
class Clustering:
    labels: np.ndarray  # per clustered point: 0..k-1, or NOISE (HDBSCAN only)
    centres: np.ndarray  # (k, dim), L2-normalised
    algorithm: str  # kmeans | hdbscan | single (too few points to split)
    silhouette: float | None  # of the chosen clustering (cosine), None where undefined
    silhouette_by_k: dict[int, float] = field(default_factory=dict)  # k-means candidates

    @property
    def k(self) -> int:
        return len(self.centres)


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def kmeans(
    vectors: np.ndarray, *, k: int | None = None, k_min: int = 2, k_max: int = 10, seed: int = 0,
    min_mean_size: int = 3,
) -> Clustering:
    """k-means; without `k`, the k in [k_min, k_max] with the highest mean silhouette (cosine).

    The search stops at n / min_mean_size clusters, so that few points are not cut into singletons (on which the
    silhouette says nothing)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(vectors)
    if n == 0:
        return Clustering(np.zeros(0, dtype=int), np.zeros((0, vectors.shape[1])), "single", None)
    if n < 3 or (k is not None and k <= 1):
        return _single(vectors)
    if k is not None:
        candidates = [min(k, n - 1)]
    else:
        upper = min(k_max, n - 1, max(2, n // min_mean_size))
        candidates = list(range(max(2, min(k_min, upper)), upper + 1)) or [2]
    best: tuple[float, np.ndarray, np.ndarray, int] | None = None
    by_k: dict[int, float] = {}
    for candidate in candidates:
        model = KMeans(n_clusters=candidate, n_init=10, random_state=seed).fit(vectors)
        labels = model.labels_
        if len(set(labels.tolist())) < 2:
            continue
        score = float(silhouette_score(vectors, labels, metric="cosine"))
        by_k[candidate] = score
        if best is None or score > best[0]:
            best = (score, labels, model.cluster_centers_, candidate)
    if best is None:
        return _single(vectors)
    score, labels, centres, _ = best
    return Clustering(labels.astype(int), normalise(centres), "kmeans", score, by_k)


def hdbscan(vectors: np.ndarray, *, min_cluster_size: int = 5) -> Clustering:
    """Density-based clusters of any shape and number; points in no dense region get NOISE."""
    from sklearn.cluster import HDBSCAN
    from sklearn.metrics import silhouette_score

    n = len(vectors)
    if n < max(3, min_cluster_size):
        return _single(vectors)
    labels = HDBSCAN(min_cluster_size=min_cluster_size, metric="euclidean", copy=True).fit(vectors).labels_.astype(int)
    found = sorted(set(labels.tolist()) - {NOISE})
    if not found:
        return _single(vectors)
    centres = np.stack([vectors[labels == c].mean(axis=0) for c in found])
    clustered = labels != NOISE
    silhouette = None
    if len(found) >= 2 and clustered.sum() > len(found):
        silhouette = float(silhouette_score(vectors[clustered], labels[clustered], metric="cosine"))
    return Clustering(labels, normalise(centres), "hdbscan", silhouette)


def _single(vectors: np.ndarray) -> Clustering:
    return Clustering(np.zeros(len(vectors), dtype=int), normalise(vectors.mean(axis=0, keepdims=True)), "single", None)


def nearest_centre(vectors: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the most cosine-similar centre for every row."""
    if len(centres) == 0:
        return np.full(len(vectors), NOISE, dtype=int)
    return np.argmax(vectors @ centres.T, axis=1).astype(int)


def map_2d(vectors: np.ndarray, *, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates for a map of the points: t-SNE (cosine) up to 5,000 points, PCA beyond or on request."""
    n = len(vectors)
    if n == 0:
        return np.zeros((0, 2)), "none"
    if n < 3:
        return np.column_stack([np.arange(n, dtype=float), np.zeros(n)]), "none"
    if method == "auto":
        method = "tsne" if n <= 5000 else "pca"
    if method == "tsne" and n >= 5:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (n - 1) / 3))
        coords = TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca",
                      random_state=seed).fit_transform(vectors)
        return np.asarray(coords, dtype=float), "tsne"
    from sklearn.decomposition import PCA

    return np.asarray(PCA(n_components=2, random_state=seed).fit_transform(vectors), dtype=float), "pca"
