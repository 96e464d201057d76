"""What `redlat analyze` finds about one run: clusters of failing test cases, failure-associated phrases, a 2-D map.

Plain data, JSON-able with `to_dict`, stored in the run's database by `redlat.analysis.stored`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Representative:
    index: int  # attempt index in the run
    test_case: str
    reply: str
    score: float
    failing: bool
    similarity: float  # cosine similarity to the cluster centre


@dataclass(frozen=True)
class ClusterInfo:
    cluster: int  # 0 = largest
    size: int  # clustered test cases in it (failing ones unless the scope is "all")
    n_failing_members: int
    mean_score: float  # mean deciding score of its members' replies
    n_nearest: int  # all test cases whose nearest centre is this cluster's
    n_nearest_failing: int
    failure_rate: float | None  # n_nearest_failing / n_nearest
    failure_rate_ci95: tuple[float, float]
    representatives: list[Representative]
    phrases: list[dict[str, Any]]  # distinctive phrases of the members vs all other test cases


@dataclass(frozen=True)
class Point:
    index: int  # attempt index
    failing: bool
    score: float
    cluster: int | None  # the cluster it was put in; None if not clustered (passing, or HDBSCAN noise)
    nearest: int | None  # nearest cluster centre
    x: float
    y: float


@dataclass(frozen=True)
class Analysis:
    run_id: str
    threshold: float
    embedder: str
    embedder_source: str
    n_cases: int
    n_failing: int
    scope: str  # failing | all (too few failing cases to cluster them alone)
    algorithm: str  # kmeans | hdbscan | single | none
    k: int
    silhouette: float | None
    silhouette_by_k: dict[int, float]
    map_method: str  # tsne | pca | none
    clusters: list[ClusterInfo]
    phrases: list[dict[str, Any]]  # failure-associated phrases, highest z first
    points: list[Point]
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    analysis_id: int | None = None

    def to_dict(self, *, points: bool = True) -> dict[str, Any]:
        data = asdict(self)
        data["silhouette_by_k"] = {str(k): v for k, v in self.silhouette_by_k.items()}
        if not points:
            data.pop("points")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Analysis:
        clusters = [
            ClusterInfo(**{
                **c,
                "failure_rate_ci95": tuple(c["failure_rate_ci95"]),
                "representatives": [Representative(**r) for r in c["representatives"]],
            })
            for c in data["clusters"]
        ]
        return cls(**{
            **data,
            "silhouette_by_k": {int(k): v for k, v in data["silhouette_by_k"].items()},
            "clusters": clusters,
            "points": [Point(**p) for p in data.get("points", [])],
        })
