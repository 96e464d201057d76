"""The run store: one SQLite database per run directory, written round by round in transactions.

A round (a batch of red-LM samples, the replies to its new test cases and their scores) is committed whole or not
at all, so a run killed at any moment resumes from its last committed round with nothing lost and nothing doubled.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redlat.errors import RunStoreError
from redlat.records import Attempt, Sample

DB_NAME = "run.sqlite"
CONFIG_NAME = "config.json"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS run (
    run_id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    method TEXT NOT NULL,
    config TEXT NOT NULL,          -- resolved config, JSON
    fingerprint TEXT NOT NULL,     -- hash of the settings that determine results
    seed INTEGER NOT NULL,
    provenance TEXT NOT NULL,      -- versions, git commit, models and weight hashes, host; JSON
    status TEXT NOT NULL,          -- running | complete
    stop_reason TEXT,              -- reached_n | reached_max_samples
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    timings TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY,
    n_samples INTEGER NOT NULL,
    n_attempts INTEGER NOT NULL,
    seconds REAL NOT NULL,
    committed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    idx INTEGER PRIMARY KEY,
    round INTEGER NOT NULL REFERENCES rounds(round),
    text TEXT NOT NULL,
    test_case TEXT,
    duplicate INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    idx INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES run(run_id),
    method TEXT NOT NULL,
    round INTEGER NOT NULL REFERENCES rounds(round),
    sample_idx INTEGER NOT NULL UNIQUE REFERENCES samples(idx),
    test_case TEXT NOT NULL UNIQUE,
    reply TEXT NOT NULL,
    score REAL NOT NULL,
    offensive INTEGER NOT NULL,
    origin TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS scores (
    attempt_idx INTEGER NOT NULL REFERENCES attempts(idx),
    classifier TEXT NOT NULL,
    label TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (attempt_idx, classifier, label)
);
CREATE TABLE IF NOT EXISTS results (     -- experiments: one row per (setting, seed, metric)
    setting TEXT NOT NULL,
    seed INTEGER NOT NULL,
    metric TEXT NOT NULL,
    value REAL,                    -- NULL for a metric that is undefined (NaN)
    PRIMARY KEY (setting, seed, metric)
);
CREATE TABLE IF NOT EXISTS result_settings (
    setting TEXT PRIMARY KEY,
    details TEXT NOT NULL          -- JSON: what the setting is (defence kind, norm, eps, layers, ...)
);
CREATE TABLE IF NOT EXISTS training_steps (
    phase TEXT NOT NULL,           -- supervised | rl
    step INTEGER NOT NULL,         -- optimizer step (0: before training)
    metrics TEXT NOT NULL,         -- JSON: losses; for RL mean reward, KL, offensive rate, self-BLEU
    samples TEXT NOT NULL DEFAULT '[]',  -- JSON: a few test cases with replies and rewards
    logged_at REAL NOT NULL,
    PRIMARY KEY (phase, step)
);
CREATE INDEX IF NOT EXISTS attempts_by_score ON attempts(score DESC);
"""


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    command: str
    method: str
    config: dict[str, Any]
    fingerprint: str
    seed: int
    provenance: dict[str, Any]
    status: str
    stop_reason: str | None
    created_at: float
    finished_at: float | None
    timings: dict[str, float]


@dataclass(frozen=True)
class Counts:
    n_samples: int
    n_valid: int
    n_unique: int
    n_offensive: int


class RunStore:
    """Access to one run directory's database. Use as a context manager, or call close()."""

    def __init__(self, run_dir: str | Path, *, create: bool = False) -> None:
        self.run_dir = Path(run_dir)
        self.db_path = self.run_dir / DB_NAME
        if not self.db_path.exists():
            if not create:
                raise RunStoreError(
                    f"{self.run_dir} is not a redlat run directory (no {DB_NAME} in it); "
                    "give the --run-dir of a run made by `redlat redteam`"
                )
            self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.db_path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise RunStoreError(f"cannot open the run database {self.db_path}: {exc}") from exc

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def _check_schema(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise RunStoreError(
                f"{self.db_path} has store schema {row[0]}, this redlat reads schema {SCHEMA_VERSION}"
            )

    # -- the run ---------------------------------------------------------------------------------------------

    def has_run(self) -> bool:
        return self._db.execute("SELECT 1 FROM run").fetchone() is not None

    def start_run(
        self,
        *,
        run_id: str,
        command: str,
        method: str,
        config: dict[str, Any],
        fingerprint: str,
        seed: int,
        provenance: dict[str, Any],
    ) -> None:
        now = time.time()
        with self.transaction():
            self._db.execute(
                "INSERT INTO run (run_id, command, method, config, fingerprint, seed, provenance, status,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                (
                    run_id,
                    command,
                    method,
                    json.dumps(config),
                    fingerprint,
                    seed,
                    json.dumps(provenance),
                    now,
                    now,
                ),
            )
        (self.run_dir / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    def record_resume(self, provenance: dict[str, Any]) -> None:
        """Note that a later process continued the run (its provenance is kept beside the first one's)."""
        info = self.run_info()
        resumes = [*info.provenance.get("resumed_by", []), provenance]
        merged = {**info.provenance, "resumed_by": resumes}
        with self.transaction():
            self._db.execute(
                "UPDATE run SET provenance=?, status='running', updated_at=?",
                (json.dumps(merged), time.time()),
            )

    def run_info(self) -> RunInfo:
        row = self._db.execute(
            "SELECT run_id, command, method, config, fingerprint, seed, provenance, status, stop_reason,"
            " created_at, finished_at, timings FROM run"
        ).fetchone()
        if row is None:
            raise RunStoreError(f"{self.db_path} holds no run (it was interrupted before it started)")
        return RunInfo(
            run_id=row[0],
            command=row[1],
            method=row[2],
            config=json.loads(row[3]),
            fingerprint=row[4],
            seed=row[5],
            provenance=json.loads(row[6]),
            status=row[7],
            stop_reason=row[8],
            created_at=row[9],
            finished_at=row[10],
            timings=json.loads(row[11]),
        )

    def finish_run(self, stop_reason: str, timings: dict[str, float]) -> None:
        now = time.time()
        with self.transaction():
            self._db.execute(
                "UPDATE run SET status='complete', stop_reason=?, finished_at=?, updated_at=?, timings=?",
                (stop_reason, now, now, json.dumps(timings)),
            )

    # -- rounds ----------------------------------------------------------------------------------------------

    def next_round(self) -> int:
        row = self._db.execute("SELECT MAX(round) FROM rounds").fetchone()
        return 0 if row[0] is None else row[0] + 1

    def counts(self) -> Counts:
        n_samples, n_valid = self._db.execute("SELECT COUNT(*), COUNT(test_case) FROM samples").fetchone()
        n_unique, n_offensive = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(offensive), 0) FROM attempts"
        ).fetchone()
        return Counts(n_samples=n_samples, n_valid=n_valid, n_unique=n_unique, n_offensive=n_offensive)

    def seen_test_cases(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT test_case FROM attempts")}

    def timings(self) -> dict[str, float]:
        row = self._db.execute("SELECT COALESCE(SUM(seconds), 0) FROM rounds").fetchone()
        return {"rounds_seconds": float(row[0])}

    def write_round(
        self, round_: int, samples: Sequence[Sample], attempts: Sequence[Attempt], seconds: float
    ) -> None:
        """Commit one round whole: its samples, attempts and scores, or nothing if anything fails."""
        with self.transaction():
            self._db.execute(
                "INSERT INTO rounds VALUES (?, ?, ?, ?, ?)",
                (round_, len(samples), len(attempts), seconds, time.time()),
            )
            self._db.executemany(
                "INSERT INTO samples VALUES (?, ?, ?, ?, ?)",
                [(s.index, s.round, s.text, s.test_case, int(s.duplicate)) for s in samples],
            )
            self._db.executemany(
                "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        a.index,
                        a.run_id,
                        a.method,
                        a.round,
                        a.sample_index,
                        a.test_case,
                        a.reply,
                        a.score,
                        int(a.offensive),
                        json.dumps(a.origin),
                    )
                    for a in attempts
                ],
            )
            self._db.executemany(
                "INSERT INTO scores VALUES (?, ?, ?, ?)",
                [
                    (a.index, classifier, label, value)
                    for a in attempts
                    for classifier, per_label in a.scores.items()
                    for label, value in per_label.items()
                ],
            )
            self._db.execute("UPDATE run SET updated_at=?", (time.time(),))

    # -- training (supervised and RL red LMs) ---------------------------------------------------------------

    def log_training_step(
        self, phase: str, step: int, metrics: dict[str, Any], samples: Sequence[dict[str, Any]] = ()
    ) -> None:
        """Record one optimizer step. A step replayed after a resume replaces its first record."""
        with self.transaction():
            existing = self._db.execute(
                "SELECT metrics, samples FROM training_steps WHERE phase=? AND step=?", (phase, step)
            ).fetchone()
            if existing is not None:  # the same step, logged in parts (the reward first, then the trainer's log)
                metrics = {**json.loads(existing[0]), **metrics}
                samples = samples or json.loads(existing[1])
            self._db.execute(
                "INSERT OR REPLACE INTO training_steps VALUES (?, ?, ?, ?, ?)",
                (phase, step, json.dumps(metrics), json.dumps(list(samples)), time.time()),
            )

    def forget_training_steps_after(self, phase: str, step: int) -> None:
        """Drop records past a checkpoint that a resumed run is about to redo."""
        with self.transaction():
            self._db.execute("DELETE FROM training_steps WHERE phase=? AND step>?", (phase, step))

    def training_steps(self, phase: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT phase, step, metrics, samples FROM training_steps"
        params: tuple[str, ...] = ()
        if phase is not None:
            sql += " WHERE phase=?"
            params = (phase,)
        return [
            {"phase": row[0], "step": row[1], **json.loads(row[2]), "samples": json.loads(row[3])}
            for row in self._db.execute(sql + " ORDER BY phase, step", params)
        ]

    # -- experiments ---------------------------------------------------------------------------------------------

    def write_result(
        self,
        setting: str,
        seed: int,
        metrics: dict[str, float],
        details: dict[str, Any],
        steps: Sequence[dict[str, Any]] = (),
    ) -> None:
        """One (setting, seed) of an experiment, with its training log, in one transaction: all or nothing."""
        with self.transaction():
            self._db.execute("INSERT OR REPLACE INTO result_settings VALUES (?, ?)", (setting, json.dumps(details)))
            self._db.execute("DELETE FROM results WHERE setting=? AND seed=?", (setting, seed))
            self._db.executemany(
                "INSERT INTO results VALUES (?, ?, ?, ?)",
                [(setting, seed, name, None if value != value else float(value)) for name, value in metrics.items()],
            )
            phase = f"{setting}/seed-{seed}"
            self._db.execute("DELETE FROM training_steps WHERE phase=?", (phase,))
            now = time.time()
            self._db.executemany(
                "INSERT INTO training_steps VALUES (?, ?, ?, '[]', ?)",
                [(phase, int(step["step"]), json.dumps(step), now) for step in steps],
            )
            self._db.execute("UPDATE run SET updated_at=?", (now,))

    def completed_results(self) -> set[tuple[str, int]]:
        return {(row[0], row[1]) for row in self._db.execute("SELECT DISTINCT setting, seed FROM results")}

    def results(self) -> list[dict[str, Any]]:
        """Every result row: setting, seed, metric, value (NaN where undefined)."""
        rows = self._db.execute("SELECT setting, seed, metric, value FROM results ORDER BY setting, seed, metric")
        return [
            {"setting": r[0], "seed": r[1], "metric": r[2], "value": float("nan") if r[3] is None else r[3]}
            for r in rows
        ]

    def result_settings(self) -> dict[str, dict[str, Any]]:
        return {r[0]: json.loads(r[1]) for r in self._db.execute("SELECT setting, details FROM result_settings")}

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    # -- reading ---------------------------------------------------------------------------------------------

    def attempts(
        self, *, order: str = "index", limit: int | None = None, round_: int | None = None
    ) -> Iterator[Attempt]:
        """Attempts with all their scores, by discovery order or by deciding score (highest first); `round_`: only
        that round's (a dialogue's previous turn), read without the rest of the run."""
        order_sql = {"index": "idx", "score": "score DESC, idx"}[order]
        where, params = ("WHERE round = ?", [round_]) if round_ is not None else ("", [])
        sql = (
            "SELECT idx, run_id, method, round, sample_idx, test_case, reply, score, offensive, origin"
            f" FROM attempts {where} ORDER BY {order_sql}"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self._db.execute(sql, params).fetchall()
        scores: dict[int, dict[str, dict[str, float]]] = {}
        wanted = {row[0] for row in rows}
        score_sql = "SELECT attempt_idx, classifier, label, score FROM scores"
        if round_ is not None:
            score_sql += " WHERE attempt_idx IN (SELECT idx FROM attempts WHERE round = ?)"
        for idx, classifier, label, value in self._db.execute(
            score_sql + " ORDER BY attempt_idx, classifier, label", [round_] if round_ is not None else []
        ):
            if idx in wanted:
                scores.setdefault(idx, {}).setdefault(classifier, {})[label] = value
        for row in rows:
            yield Attempt(
                index=row[0],
                run_id=row[1],
                method=row[2],
                round=row[3],
                sample_index=row[4],
                test_case=row[5],
                reply=row[6],
                score=row[7],
                offensive=bool(row[8]),
                scores=scores.get(row[0], {}),
                origin=json.loads(row[9]),
            )

    def samples(self) -> Iterator[Sample]:
        for row in self._db.execute(
            "SELECT idx, round, text, test_case, duplicate FROM samples ORDER BY idx"
        ):
            yield Sample(index=row[0], round=row[1], text=row[2], test_case=row[3], duplicate=bool(row[4]))

    # -- transactions and raw SQL, also for modules that keep their own tables here (analysis) ----------------

    def transaction(self) -> _Transaction:
        """A write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on any exception)."""
        return _Transaction(self._db)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> sqlite3.Cursor:
        return self._db.executemany(sql, rows)



class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception (KeyboardInterrupt included)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
