"""Analyses kept in the run's own SQLite database, in plain tables that can be queried with SQL:

    analyses(id, created_at, config, summary)                      one row per `redlat analyze`
    analysis_clusters(analysis_id, cluster, size, n_nearest, n_nearest_failing, failure_rate, detail)
    analysis_phrases(analysis_id, rank, phrase, n_cases, n_failing, share_of_failing, failure_rate, log_odds, z)
    analysis_points(analysis_id, attempt_idx, failing, score, cluster, nearest_cluster, x, y)

Each analysis is written in one transaction; the latest one is what the report shows.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from redlat.analysis.result import Analysis, ClusterInfo, Point, Representative
from redlat.store import RunStore

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS analyses (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        config TEXT NOT NULL,
        summary TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS analysis_clusters (
        analysis_id INTEGER NOT NULL REFERENCES analyses(id),
        cluster INTEGER NOT NULL,
        size INTEGER NOT NULL,
        n_nearest INTEGER NOT NULL,
        n_nearest_failing INTEGER NOT NULL,
        failure_rate REAL,
        detail TEXT NOT NULL,
        PRIMARY KEY (analysis_id, cluster)
    )""",
    """CREATE TABLE IF NOT EXISTS analysis_phrases (
        analysis_id INTEGER NOT NULL REFERENCES analyses(id),
        rank INTEGER NOT NULL,
        phrase TEXT NOT NULL,
        n_cases INTEGER NOT NULL,
        n_failing INTEGER NOT NULL,
        share_of_failing REAL NOT NULL,
        failure_rate REAL NOT NULL,
        log_odds REAL NOT NULL,
        z REAL NOT NULL,
        PRIMARY KEY (analysis_id, rank)
    )""",
    """CREATE TABLE IF NOT EXISTS analysis_points (
        analysis_id INTEGER NOT NULL REFERENCES analyses(id),
        attempt_idx INTEGER NOT NULL REFERENCES attempts(idx),
        failing INTEGER NOT NULL,
        score REAL NOT NULL,
        cluster INTEGER,
        nearest_cluster INTEGER,
        x REAL NOT NULL,
        y REAL NOT NULL,
        PRIMARY KEY (analysis_id, attempt_idx)
    )""",
]

_PHRASE_FIELDS = ("phrase", "n_cases", "n_failing", "share_of_failing", "failure_rate", "log_odds", "z")
_SUMMARY_DROP = ("clusters", "phrases", "points", "config", "created_at", "analysis_id")


def _ensure_tables(store: RunStore) -> None:
    with store.transaction():
        for statement in _SCHEMA:
            store.execute(statement)


def save_analysis(store: RunStore, analysis: Analysis) -> int:
    """Write one analysis whole; return its id."""
    _ensure_tables(store)
    data = analysis.to_dict()
    summary = {key: value for key, value in data.items() if key not in _SUMMARY_DROP}
    with store.transaction():
        cursor = store.execute(
            "INSERT INTO analyses (created_at, config, summary) VALUES (?, ?, ?)",
            (analysis.created_at or time.time(), json.dumps(analysis.config), json.dumps(summary)),
        )
        analysis_id = int(cursor.lastrowid or 0)
        store.executemany(
            "INSERT INTO analysis_clusters VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (analysis_id, c["cluster"], c["size"], c["n_nearest"], c["n_nearest_failing"], c["failure_rate"],
                 json.dumps({key: c[key] for key in ("n_failing_members", "mean_score", "failure_rate_ci95",
                                                      "representatives", "phrases")}))
                for c in data["clusters"]
            ],
        )
        store.executemany(
            "INSERT INTO analysis_phrases VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(analysis_id, rank, *(p[f] for f in _PHRASE_FIELDS)) for rank, p in enumerate(data["phrases"])],
        )
        store.executemany(
            "INSERT INTO analysis_points VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(analysis_id, p.index, int(p.failing), p.score, p.cluster, p.nearest, p.x, p.y)
             for p in analysis.points],
        )
    return analysis_id


def latest_analysis(store: RunStore | str | Path) -> Analysis | None:
    """The most recent stored analysis of a run (its store or its directory), or None if it was never analysed."""
    if not isinstance(store, RunStore):
        with RunStore(store) as opened:
            return latest_analysis(opened)
    _ensure_tables(store)
    row = store.execute("SELECT id, created_at, config, summary FROM analyses ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    analysis_id = int(row[0])
    data: dict[str, Any] = {**json.loads(row[3]), "config": json.loads(row[2]), "created_at": row[1],
                            "analysis_id": analysis_id}
    clusters = []
    for cluster, size, n_nearest, n_nearest_failing, failure_rate, detail in store.execute(
        "SELECT cluster, size, n_nearest, n_nearest_failing, failure_rate, detail FROM analysis_clusters"
        " WHERE analysis_id=? ORDER BY cluster", (analysis_id,)
    ):
        extra = json.loads(detail)
        clusters.append(ClusterInfo(
            cluster=cluster, size=size, n_nearest=n_nearest, n_nearest_failing=n_nearest_failing,
            failure_rate=failure_rate, n_failing_members=extra["n_failing_members"], mean_score=extra["mean_score"],
            failure_rate_ci95=tuple(extra["failure_rate_ci95"]),
            representatives=[Representative(**r) for r in extra["representatives"]], phrases=extra["phrases"],
        ))
    phrases = [
        dict(zip(_PHRASE_FIELDS, r, strict=True))
        for r in store.execute(
            f"SELECT {', '.join(_PHRASE_FIELDS)} FROM analysis_phrases WHERE analysis_id=? ORDER BY rank",
            (analysis_id,),
        )
    ]
    points = [
        Point(index=r[0], failing=bool(r[1]), score=r[2], cluster=r[3], nearest=r[4], x=r[5], y=r[6])
        for r in store.execute(
            "SELECT attempt_idx, failing, score, cluster, nearest_cluster, x, y FROM analysis_points"
            " WHERE analysis_id=? ORDER BY attempt_idx", (analysis_id,)
        )
    ]
    data["silhouette_by_k"] = {int(k): v for k, v in data["silhouette_by_k"].items()}
    return Analysis(**{**data, "clusters": clusters, "phrases": phrases, "points": points})
