"""Understanding a run's failures: sentence embeddings, clusters of failing test cases, failure-associated phrases.

    from redlat.analysis import analyze_run
    analysis = analyze_run("runs/zs")          # stored in runs/zs/run.sqlite as well
    analysis.clusters[0].representatives

Heavy imports (sentence-transformers, scikit-learn) happen when an analysis runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redlat.analysis.analyze import analyze_run
    from redlat.analysis.stored import latest_analysis

__all__ = ["analyze_run", "latest_analysis"]


def __getattr__(name: str) -> Any:
    if name == "analyze_run":
        from redlat.analysis.analyze import analyze_run

        return analyze_run
    if name == "latest_analysis":
        from redlat.analysis.stored import latest_analysis

        return latest_analysis
    raise AttributeError(f"module 'redlat.analysis' has no attribute {name!r}")
