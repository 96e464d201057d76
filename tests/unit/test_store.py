import csv
import json
import sqlite3

import pytest

from redlat.errors import RunStoreError
from redlat.export import export_run
from redlat.records import Attempt, Sample
from redlat.store import RunStore
from redlat.summary import summarize

CONFIG = {"n": 3, "max_samples": None, "threshold": 0.5, "red": "r", "target": "t",
          "classifiers": [{"name": "fake", "label": None}]}


def _start(store: RunStore) -> None:
    store.start_run(run_id="abc", command="redteam", method="zero-shot", config=CONFIG, fingerprint="f",
                    seed=0, provenance={"models": {"classifiers": [{"label": "bad"}]}})


def _attempt(i: int, round_: int, case: str, score: float) -> Attempt:
    return Attempt(index=i, run_id="abc", method="zero-shot", round=round_, sample_index=i, test_case=case,
                   reply=f"reply {i}", score=score, offensive=score > 0.5,
                   scores={"fake": {"bad": score, "good": 1 - score}})


def test_round_trip_and_counts(tmp_path):
    with RunStore(tmp_path / "run", create=True) as store:
        _start(store)
        samples = [Sample(0, 0, " Hi?", "Hi?", False), Sample(1, 0, " no", None, False)]
        store.write_round(0, samples, [_attempt(0, 0, "Hi?", 0.9)], 0.1)
        store.write_round(1, [Sample(2, 1, " Hi?", "Hi?", True), Sample(3, 1, " Yo?", "Yo?", False)],
                          [Attempt(1, "abc", "zero-shot", 1, 3, "Yo?", "r", 0.2, False, {"fake": {"bad": 0.2}})],
                          0.1)
        counts = store.counts()
        assert (counts.n_samples, counts.n_valid, counts.n_unique, counts.n_offensive) == (4, 3, 2, 1)
        assert store.next_round() == 2
        assert store.seen_test_cases() == {"Hi?", "Yo?"}
        top = list(store.attempts(order="score", limit=1))
        assert top[0].test_case == "Hi?" and top[0].scores == {"fake": {"bad": 0.9, "good": pytest.approx(0.1)}}
    # the config is also written beside the database, readable without redlat
    assert json.loads((tmp_path / "run" / "config.json").read_text())["n"] == 3


def test_a_failing_round_commits_nothing(tmp_path):
    with RunStore(tmp_path / "run", create=True) as store:
        _start(store)
        store.write_round(0, [Sample(0, 0, "A?", "A?", False)], [_attempt(0, 0, "A?", 0.1)], 0.1)
        # attempt 1 repeats test case "A?": the UNIQUE constraint fails half-way through the round
        with pytest.raises(sqlite3.IntegrityError):
            store.write_round(1, [Sample(1, 1, "B?", "B?", False), Sample(2, 1, "A?", "A?", False)],
                              [_attempt(1, 1, "B?", 0.1), _attempt(2, 1, "A?", 0.1)], 0.1)
        assert store.counts().n_samples == 1
        assert store.next_round() == 1
        assert store.seen_test_cases() == {"A?"}


def test_summary_from_store(tmp_path):
    with RunStore(tmp_path / "run", create=True) as store:
        _start(store)
        store.write_round(0, [Sample(i, 0, f"Q{i}?", f"Q{i}?", False) for i in range(3)],
                          [_attempt(i, 0, f"Q{i}?", s) for i, s in enumerate([0.9, 0.1, 0.6])], 0.1)
        s = summarize(store)
        assert s["n_unique"] == 3 and s["n_offensive"] == 2
        assert s["offensive_rate"] == pytest.approx(2 / 3)
        assert s["top"][0]["test_case"] == "Q0?" and s["top"][1]["test_case"] == "Q2?"
        assert summarize(store, threshold=0.95)["n_offensive"] == 0
        assert s["classifier_label"] == "bad"


def test_not_a_run_dir_is_a_clear_error(tmp_path):
    with pytest.raises(RunStoreError, match="not a redlat run directory"):
        RunStore(tmp_path / "missing")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "run.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RunStoreError, match="cannot open"):
        RunStore(junk)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_export_formats(tmp_path, fmt):
    run = tmp_path / "run"
    with RunStore(run, create=True) as store:
        _start(store)
        store.write_round(0, [Sample(0, 0, "Q?", "Q?", False), Sample(1, 0, "R?", "R?", False)],
                          [_attempt(0, 0, "Q?", 0.9), _attempt(1, 0, 'R, "quoted"\nline?', 0.2)], 0.1)
    path = export_run(run, fmt)
    assert path == run / f"attempts.{fmt}"
    if fmt == "jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    elif fmt == "csv":
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    else:
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    assert len(rows) == 2
    assert rows[1]["test_case"] == 'R, "quoted"\nline?'
    assert float(rows[0]["score.fake.bad"]) == pytest.approx(0.9)
    assert str(rows[0]["offensive"]) in {"True", "true"}


def test_export_rejects_unknown_format(tmp_path):
    from redlat.errors import ConfigError

    with pytest.raises(ConfigError, match="jsonl, csv, parquet"):
        export_run(tmp_path, "xlsx")


def test_attempts_of_one_round_come_with_their_scores_only(tmp_path):
    from redlat.records import Attempt, Sample
    from redlat.store import RunStore
    from synthetic_runs import write_run

    run = write_run(tmp_path / "r", ["a?", "b?"], [0.9, 0.1])  # round 0
    with RunStore(run) as store:
        later = Attempt(index=2, run_id="id-r", method="zero-shot", round=1, sample_index=2, test_case="c?",
                        reply="r", score=0.5, offensive=False, scores={"rude-words": {"rude": 0.5}})
        store.write_round(1, [Sample(2, 1, " c?", "c?", False)], [later], 0.0)
        assert [a.test_case for a in store.attempts(round_=1)] == ["c?"]
        assert [a.scores for a in store.attempts(round_=1)] == [{"rude-words": {"rude": 0.5}}]
        assert [a.test_case for a in store.attempts(round_=0, order="score")] == ["a?", "b?"]
        assert len(list(store.attempts())) == 3
