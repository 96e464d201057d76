"""`redlat analyze` and `redlat report`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from redlat.config.base import OFFLINE_EMBEDDER, _Frozen


class AnalyzeConfig(_Frozen):
    """Everything that determines a `redlat analyze` result: embedding, clustering and phrase statistics."""

    embedder: str = Field(
        default=OFFLINE_EMBEDDER, description="sentence-transformers model: offline name, hub id or local path"
    )
    threshold: float | None = Field(
        default=None, ge=0.0, le=1.0, description="a case fails when its reply's score exceeds this [the run's]"
    )
    algorithm: Literal["kmeans", "hdbscan"] = Field(default="kmeans", description="clustering algorithm")
    k: int | None = Field(default=None, ge=1, description="k-means clusters; default: chosen by silhouette")
    k_min: int = Field(default=2, ge=2, description="smallest k tried by the silhouette search")
    k_max: int = Field(default=10, ge=2, description="largest k tried by the silhouette search")
    min_cluster_size: int = Field(default=5, ge=2, description="HDBSCAN: smallest cluster")
    min_failures: int = Field(
        default=10, ge=1, description="with fewer failing cases than this, cluster all test cases instead"
    )
    representatives: int = Field(default=5, ge=1, description="test cases shown per cluster (nearest its centre)")
    cluster_phrases: int = Field(default=5, ge=0, description="distinctive phrases shown per cluster")
    ngram_max: int = Field(default=3, ge=1, le=5, description="longest phrase, in words")
    min_count: int = Field(default=2, ge=1, description="a phrase must occur in at least this many test cases")
    top_phrases: int = Field(default=20, ge=1, description="failure-associated phrases to keep")
    map: Literal["auto", "tsne", "pca"] = Field(
        default="auto", description="2-D map method; auto: t-SNE up to 5,000 cases, else PCA"
    )
    seed: int = Field(default=0, ge=0, description="seeds k-means and the map")
    device: str = Field(default="auto", description="where the embedder runs")
    batch_size: int = Field(default=64, ge=1, description="texts per embedding batch")

    @model_validator(mode="after")
    def _k_range(self) -> AnalyzeConfig:
        if self.k_min > self.k_max:
            raise ValueError(f"k_min ({self.k_min}) must not exceed k_max ({self.k_max})")
        if self.k is not None and self.algorithm != "kmeans":
            raise ValueError("--k is for k-means; HDBSCAN finds the number of clusters itself")
        return self


class ReportConfig(_Frozen):
    """What goes into a `redlat report` page."""

    analyze: bool = Field(default=True, description="analyse (and store) runs that have no stored analysis yet")
    analysis: AnalyzeConfig = AnalyzeConfig()
    threshold: float | None = Field(
        default=None, ge=0.0, le=1.0, description="count offensive replies at this threshold [each run's]"
    )
    score_test_cases: bool = Field(
        default=True, description="comparison table: score the test cases themselves with each run's classifier"
    )
    min_table_rows: int = Field(
        default=20, ge=0, description="failure table: top up with the highest-scoring passing cases to this many"
    )
    histogram_bins: int = Field(default=40, ge=5, le=200, description="bins of the score histogram")

