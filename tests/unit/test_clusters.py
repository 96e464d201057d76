"""Clustering embeddings: k by silhouette, HDBSCAN with noise, nearest centres and the 2-D map."""

from __future__ import annotations

import numpy as np

from redlat.analysis.clusters import NOISE, hdbscan, kmeans, map_2d, nearest_centre, normalise


def _blobs(
    k: int = 3, per: int = 20, dim: int = 16, spread: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = normalise(rng.normal(size=(k, dim)))
    points = np.concatenate([centres[i] + spread * rng.normal(size=(per, dim)) for i in range(k)])
    return normalise(points), np.repeat(np.arange(k), per)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return all(len(set(a[b == label].tolist())) == 1 for label in set(b.tolist())) and len(set(a.tolist())) == len(
        set(b.tolist()))


def test_kmeans_chooses_the_true_k_by_silhouette() -> None:
    for k in (2, 3, 5):
        vectors, truth = _blobs(k=k)
        result = kmeans(vectors, k_min=2, k_max=8, seed=0)
        assert result.k == k, result.silhouette_by_k
        assert _same_partition(result.labels, truth)
        assert result.silhouette == max(result.silhouette_by_k.values())
        assert np.allclose(np.linalg.norm(result.centres, axis=1), 1.0)


def test_kmeans_with_given_k_and_tiny_inputs() -> None:
    vectors, _ = _blobs(k=3)
    assert kmeans(vectors, k=4).k == 4
    assert kmeans(vectors[:2]).k == 1  # too few points to split
    assert kmeans(vectors[:0]).k == 0
    # the search stops at n / 3 clusters: 7 points never give more than 2
    assert kmeans(vectors[:7], k_max=10).k <= 2


def test_hdbscan_finds_dense_groups_and_leaves_outliers_as_noise() -> None:
    vectors, truth = _blobs(k=3, per=15, spread=0.02)
    rng = np.random.default_rng(1)
    outliers = normalise(rng.normal(size=(3, vectors.shape[1])))
    result = hdbscan(np.concatenate([vectors, outliers]), min_cluster_size=5)
    assert result.k == 3
    assert _same_partition(result.labels[: len(truth)], truth)
    assert (result.labels[len(truth):] == NOISE).sum() >= 2


def test_nearest_centre_and_map() -> None:
    vectors, _ = _blobs(k=3)
    result = kmeans(vectors, k=3)
    nearest = nearest_centre(vectors, result.centres)
    assert (nearest == result.labels).all()
    coords, method = map_2d(vectors, method="tsne")
    assert coords.shape == (len(vectors), 2) and method == "tsne"
    coords, method = map_2d(vectors, method="pca")
    assert coords.shape == (len(vectors), 2) and method == "pca"
    assert map_2d(vectors[:2])[0].shape == (2, 2)
