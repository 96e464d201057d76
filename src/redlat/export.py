"""Export a run's attempts as JSON Lines, CSV or Parquet: one row per attempt, one column per classifier label."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Literal

from redlat.atomic import atomic_path
from redlat.errors import ConfigError
from redlat.store import RunStore

Format = Literal["jsonl", "csv", "parquet"]
FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet")


def attempt_rows(store: RunStore, *, threshold: float | None = None) -> list[dict[str, Any]]:
    """Flat rows: ids, test case, reply, deciding score, offensive flag, then `score.<classifier>.<label>`."""
    info = store.run_info()
    thr = float(info.config["threshold"]) if threshold is None else threshold
    rows = []
    for a in store.attempts():
        row: dict[str, Any] = {
            "run_id": a.run_id,
            "index": a.index,
            "method": a.method,
            "round": a.round,
            "sample_index": a.sample_index,
            "test_case": a.test_case,
            "reply": a.reply,
            "score": a.score,
            "offensive": a.score > thr,
        }
        for classifier, labels in sorted(a.scores.items()):
            for label, value in sorted(labels.items()):
                row[f"score.{classifier}.{label}"] = value
        if a.origin:
            row["origin"] = json.dumps(a.origin, sort_keys=True)
        rows.append(row)
    return rows


def export_run(run_dir: str | Path, fmt: str, out: str | Path | None = None) -> Path:
    """Write the run's attempts to `out` (default: RUN_DIR/attempts.FORMAT) and return the path."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    with RunStore(run_dir) as store:
        rows = attempt_rows(store)
    path = Path(out) if out is not None else Path(run_dir) / f"attempts.{fmt}"
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(path) as tmp:
        _write(rows, columns, fmt, tmp)
    return path


def _write(rows: list[dict[str, Any]], columns: list[str], fmt: str, tmp: Path) -> None:
    if fmt == "jsonl":
        with open(tmp, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(rows) if rows else pa.table({c: [] for c in columns or ["index"]})
        pq.write_table(table, tmp)
