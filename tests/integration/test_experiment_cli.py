"""`redlat experiment trojans-vision --quick` end to end (real digits, the whole sweep, about a minute on 2 cores)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest


def redlat(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "redlat", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ})


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    run = tmp_path_factory.mktemp("trojans") / "quick"
    result = redlat("experiment", "trojans-vision", "--quick", "--json", "--run-dir", str(run), "--device", "cpu")
    return run, result


def test_quick_sweep_writes_table_figures_and_summary(quick_run):
    run, result = quick_run
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    names = [s["setting"] for s in summary["settings"]]
    assert names == ["poisoned", "none", "at-linf-0.1", "at-l2-1", "lat-block2-l2-0.25x", "lat-block3-l2-0.25x"]
    assert summary["trojans"] == ["patch", "blend", "stroke"]
    poisoned = summary["settings"][0]["metrics"]
    assert poisoned["clean_acc"]["mean"] > 0.85  # a real classifier on real digits
    assert poisoned["mean_asr"]["mean"] > 0.5  # with trojans really planted
    for s in summary["settings"]:
        assert s["seeds"] == [0, 1]
        m = s["metrics"]
        assert m["clean_acc"]["low"] <= m["clean_acc"]["mean"] <= m["clean_acc"]["high"]
        assert all(0 <= m[k]["mean"] <= 1 for k in m if k.startswith(("robust:", "asr:")))
    fronts = summary["pareto"]
    assert fronts["clean_vs_trojan_success"] and set(fronts["clean_vs_trojan_success"]) <= set(names[1:])
    for path in summary["figures"].values():
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((run / "summary.json").read_text())["settings"] == summary["settings"]
    with sqlite3.connect(run / "run.sqlite") as db:
        rows = db.execute("SELECT COUNT(DISTINCT setting || '/' || seed) FROM results").fetchone()[0]
        steps = db.execute("SELECT metrics FROM training_steps WHERE phase='at-l2-1/seed-0' ORDER BY step").fetchall()
        config = json.loads(db.execute("SELECT config FROM run").fetchone()[0])
    assert rows == 12 and config["seeds"] == [0, 1]
    logged = [json.loads(r[0]) for r in steps]
    assert len(logged) == 40 and all(s["adv_loss"] is not None and s["norms"][""] <= 1.0 + 1e-5 for s in logged)
    assert "seed 1" in result.stderr  # a progress line per finished setting


def test_rerun_resumes_without_recomputing(quick_run):
    run, _ = quick_run
    before = sqlite3.connect(run / "run.sqlite").execute("SELECT * FROM results ORDER BY 1, 2, 3").fetchall()
    again = redlat("experiment", "trojans-vision", "--quick", "--run-dir", str(run), "--device", "cpu", timeout=120)
    assert again.returncode == 0, again.stderr
    assert "seed 0:" not in again.stderr  # nothing was trained again
    assert "clean acc" in again.stdout and "poisoned" in again.stdout  # the table
    after = sqlite3.connect(run / "run.sqlite").execute("SELECT * FROM results ORDER BY 1, 2, 3").fetchall()
    assert after == before


def test_summary_reads_an_experiment_run(quick_run):
    run, first = quick_run
    result = redlat("summary", str(run), "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["settings"] == json.loads(first.stdout)["settings"]


def test_another_config_in_the_same_run_dir_is_refused(quick_run):
    run, _ = quick_run
    result = redlat("experiment", "trojans-vision", "--quick", "--seeds", "5", "--run-dir", str(run), timeout=120)
    assert result.returncode == 2 and "holds another run" in result.stderr and "Traceback" not in result.stderr


def test_bad_experiment_input_is_clear(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("eval_attacks: [pgd-l7:1]\n")
    result = redlat("experiment", "trojans-vision", "--config", str(bad), "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 2 and "unknown attack 'pgd-l7:1'" in result.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text("seedz: [1]\n")
    result = redlat("experiment", "trojans-vision", "--config", str(typo), "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 2 and "seedz: unknown setting" in result.stderr
    result = redlat("experiment", "trojans-vision", "--seeds", "0,x", "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 2 and "comma-separated integers" in result.stderr
    result = redlat("experiment", "trojans-vision", "--dataset", "imagefolder", "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 2 and ("torchvision" in result.stderr or "data_dir" in result.stderr)
    assert not (tmp_path / "r").exists()  # nothing written for bad input
