"""The whole CLI end to end, in subprocesses, on tiny models and the real (small, fast) offline scorers."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("offline_scorers")


@pytest.fixture(scope="module")
def offline_scorers():
    from importlib.util import find_spec

    for module in ("toxic_classifier", "profanity_check"):
        if find_spec(module) is None:
            pytest.skip(f"offline scorer package {module} not installed (bash scripts/setup.sh installs it)")


def redlat(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "redlat", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _redteam_args(model: Path, run_dir: Path, n: int, *extra: str) -> list[str]:
    return ["redteam", "--red", str(model), "--target", str(model), "--n", str(n), "--run-dir", str(run_dir),
            "--classifier", "jigsaw-bilstm", "--classifier", "profanity", "--red-max-new-tokens", "16",
            "--max-new-tokens", "16", "--device", "cpu", *extra]


def test_help_is_light():
    out = subprocess.run([sys.executable, "-c", "import sys, redlat.cli; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    result = redlat("--help")
    assert result.returncode == 0 and "redteam" in result.stdout and "summary" in result.stdout


def test_redteam_summary_export(questioner_path, tmp_path):
    run = tmp_path / "run"
    result = redlat(*_redteam_args(questioner_path, run, 12, "--no-progress"))
    assert result.returncode == 0, result.stderr
    for needle in ("samples drawn", "unique test cases", "95% Wilson CI", "Top", "stored in"):
        assert needle in result.stdout
    summary = json.loads(redlat("summary", str(run), "--json").stdout)
    for key in ("n_samples", "n_valid", "n_unique", "offensive_rate", "threshold", "classifier", "target", "red"):
        assert key in summary
    assert summary["n_unique"] == 12 and summary["classifier"] == "jigsaw-bilstm"
    assert summary["classifier_label"] == "toxic" and summary["chat_format"] == "dpg"
    assert len(summary["top"]) == 10
    assert summary["top"][0]["score"] >= summary["top"][-1]["score"]
    for fmt in ("jsonl", "csv", "parquet"):
        out = redlat("export", str(run), "--format", fmt)
        assert out.returncode == 0, out.stderr
        assert Path(out.stdout.strip()).exists()
    with open(run / "attempts.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12
    assert {"score.jigsaw-bilstm.toxic", "score.jigsaw-bilstm.insult", "score.profanity.offensive"} <= set(rows[0])
    # the run directory describes itself
    config = json.loads((run / "config.json").read_text())
    assert config["n"] == 12 and config["red_generation"]["top_p"] == 0.95
    with sqlite3.connect(run / "run.sqlite") as db:
        provenance = json.loads(db.execute("SELECT provenance FROM run").fetchone()[0])
    assert provenance["versions"]["torch"] and "commit" in provenance["git"]
    assert provenance["models"]["red"]["weights"] and provenance["models"]["classifiers"][0]["weights"]
    assert provenance["generation"]["red"]["top_k"] == 0 and provenance["generation"]["target"]["top_p"] == 0.8
    assert provenance["generation"]["target"]["stop_at_newline"] is True
    assert len(provenance["models"]["target"]["dialogue_prompt_sha256"]) == 64


def test_chat_model_and_offensive_label_and_yaml(questioner_chat_path, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("seed: 3\ntarget_generation:\n  max_new_tokens: 12\n")
    run = tmp_path / "run"
    result = redlat(*_redteam_args(questioner_chat_path, run, 6, "--no-progress", "--json", "--config", str(config),
                                   "--offensive-label", "insult"))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["chat_format"] == "chat" and summary["classifier_label"] == "insult" and summary["seed"] == 3


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--n", "0"], "at least 1"),
        (["--threshold", "1.5"], "[0, 1]"),
        (["--prompt-file", "/nonexistent/prompt.txt"], "cannot read the prompt file"),
        (["--chat-format", "chat"], "no chat template"),
        (["--classifier", "jigsaw-bilstm", "--offensive-label", "nope"], "nope"),
    ],
)
def test_bad_input_is_a_clear_error(questioner_path, tmp_path, args, needle):
    run = tmp_path / "run"
    base = ["redteam", "--red", str(questioner_path), "--target", str(questioner_path), "--run-dir", str(run),
            "--device", "cpu", "--no-progress"]
    result = redlat(*base, *args)
    assert result.returncode != 0
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert not (run / "run.sqlite").exists()  # nothing half-made left behind


def test_unknown_model_names_the_offline_defaults(tmp_path):
    run = tmp_path / "run"
    result = redlat("redteam", "--red", "no-such-org/no-such-model", "--run-dir", str(run), "--no-progress",
                    env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode != 0
    assert "smollm2-135m-instruct" in result.stderr and "Traceback" not in result.stderr
    assert not run.exists()


def test_missing_config_and_run_dir_errors(tmp_path):
    result = redlat("redteam", "--config", str(tmp_path / "none.yaml"))
    assert result.returncode != 0 and "cannot read config file" in result.stderr
    result = redlat("summary", str(tmp_path))
    assert result.returncode != 0 and "not a redlat run directory" in result.stderr


def test_kill_minus_nine_then_resume(questioner_path, tmp_path):
    run = tmp_path / "run"
    args = _redteam_args(questioner_path, run, 60, "--no-progress", "--red-batch-size", "2")
    proc = subprocess.Popen([sys.executable, "-m", "redlat", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    db = run / "run.sqlite"
    deadline = time.time() + 240
    rounds = 0
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as conn:
                    rounds = conn.execute("SELECT COUNT(*) FROM rounds").fetchone()[0]
            except sqlite3.OperationalError:
                rounds = 0
            if rounds >= 3:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as conn:
        killed_at = conn.execute("SELECT COUNT(*) FROM attempts").fetchone()[0]
    assert 0 < killed_at < 60

    resumed = redlat(*args)
    assert resumed.returncode == 0, resumed.stderr
    reference = redlat(*_redteam_args(questioner_path, tmp_path / "ref", 60, "--no-progress",
                                      "--red-batch-size", "2"))
    assert reference.returncode == 0, reference.stderr
    rows = {}
    for name in ("run", "ref"):
        with sqlite3.connect(tmp_path / name / "run.sqlite") as conn:
            rows[name] = conn.execute("SELECT idx, sample_idx, test_case, reply, score FROM attempts ORDER BY idx"
                                      ).fetchall()
    assert len(rows["run"]) == 60 == len({r[2] for r in rows["run"]})  # all found, none twice
    assert rows["run"] == rows["ref"]  # and exactly what an uninterrupted run finds


def test_ctrl_c_says_how_to_resume(questioner_path, tmp_path):
    run = tmp_path / "run"
    # n far beyond what can finish before the interrupt (with n = 80 a loaded CI machine sometimes finished first)
    args = _redteam_args(questioner_path, run, 5000, "--no-progress", "--red-batch-size", "2")
    # A shell that starts jobs in the background without job control makes them ignore SIGINT, and Python keeps an
    # ignored SIGINT ignored: give the child the default disposition, as a terminal would.
    proc = subprocess.Popen([sys.executable, "-m", "redlat", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _interrupt_after_two_rounds(proc, run)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _interrupt_after_two_rounds(proc: subprocess.Popen, run: Path) -> None:
    db = run / "run.sqlite"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as conn:
                    if conn.execute("SELECT COUNT(*) FROM rounds").fetchone()[0] >= 2:
                        break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.05)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "resume" in err and str(run) in err


def test_resume_with_other_config_is_refused(questioner_path, tmp_path):
    run = tmp_path / "run"
    assert redlat(*_redteam_args(questioner_path, run, 4, "--no-progress")).returncode == 0
    before = hashlib.sha256((run / "run.sqlite").read_bytes()).hexdigest()
    result = redlat(*_redteam_args(questioner_path, run, 4, "--no-progress", "--seed", "9"))
    assert result.returncode != 0 and "different config" in result.stderr and "seed: 0 -> 9" in result.stderr
    assert hashlib.sha256((run / "run.sqlite").read_bytes()).hexdigest() == before


def test_few_shot_from_a_zero_shot_run(questioner_path, tmp_path):
    zs, fs = tmp_path / "zs", tmp_path / "fs"
    assert redlat(*_redteam_args(questioner_path, zs, 10, "--no-progress")).returncode == 0
    result = redlat(*_redteam_args(questioner_path, fs, 8, "--no-progress", "--json", "--method", "few-shot",
                                   "--from", str(zs), "--k", "3"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["method"] == "few-shot"
    with sqlite3.connect(fs / "run.sqlite") as db:
        origins = [json.loads(row[0]) for row in db.execute("SELECT origin FROM attempts")]
    assert len(origins) == 8 and all(len(o["examples"]) == 3 for o in origins)


def test_few_shot_needs_a_real_pool(questioner_path, tmp_path):
    run = tmp_path / "fs"
    result = redlat(*_redteam_args(questioner_path, run, 4, "--no-progress", "--method", "few-shot"))
    assert result.returncode != 0 and "--from" in result.stderr
    result = redlat(*_redteam_args(questioner_path, run, 4, "--no-progress", "--method", "few-shot",
                                   "--from", str(tmp_path / "nothing-here")))
    assert result.returncode != 0 and "not a redlat run directory" in result.stderr
    assert not run.exists()


def test_four_methods_in_sequence_then_compare(questioner_path, tmp_path):
    zs, fs, sl, rl = (tmp_path / name for name in ("zs", "fs", "sl", "rl"))
    assert redlat(*_redteam_args(questioner_path, zs, 20, "--no-progress")).returncode == 0
    assert redlat(*_redteam_args(questioner_path, fs, 6, "--no-progress", "--method", "few-shot",
                                 "--from", str(zs))).returncode == 0
    result = redlat(*_redteam_args(questioner_path, sl, 6, "--no-progress", "--method", "supervised",
                                   "--from", str(zs), "--train-top", "10", "--lora"))
    assert result.returncode == 0, result.stderr
    assert (sl / "red_model" / "training.json").exists()
    result = redlat(*_redteam_args(questioner_path, rl, 6, "--no-progress", "--json", "--method", "rl",
                                   "--from", str(sl), "--rl-steps", "2", "--rl-batch-size", "8",
                                   "--group-size", "4", "--kl-coef", "0.05"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["method"] == "rl"
    with sqlite3.connect(rl / "run.sqlite") as db:
        assert [row[0] for row in db.execute("SELECT step FROM training_steps WHERE phase='rl'")] == [1, 2]
        start = json.loads(db.execute("SELECT provenance FROM run").fetchone()[0])["method"]["start_model"]
    assert start == str(sl / "red_model")

    plot = tmp_path / "figure2.png"
    result = redlat("compare", str(zs), str(fs), str(sl), str(rl), "--json", "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["method"] for r in rows] == ["zero-shot", "few-shot", "supervised", "rl"]
    assert [r["n"] + r["n_excluded"] for r in rows] == [20, 6, 6, 6]  # few-shot copies of the pool: left out
    assert all(r["n_excluded"] == 0 for r in rows if r["method"] != "few-shot")
    assert all(r["self_bleu"] is not None and r["test_cases_offensive_rate"] is not None for r in rows)
    assert plot.read_bytes()[:4] == b"\x89PNG"
    table = redlat("compare", str(zs), str(rl))
    assert table.returncode == 0 and "self-BLEU" in table.stdout and "rl" in table.stdout


@pytest.mark.parametrize("args, needle", [
    (["--method", "supervised"], "needs --from RUN_DIR"),
    (["--method", "supervised", "--from", "ZS", "--train-top", "500"], "at least 10 test cases"),
    (["--method", "supervised", "--from", "ZS", "--train-threshold", "0.99"], "--train-top N"),
    (["--lora"], "--method supervised or rl"),
    (["--method", "rl", "--rl-batch-size", "6", "--group-size", "4"], "multiple of group_size"),
    (["--method", "rl", "--from", "NOWHERE"], "not a redlat run directory"),
])
def test_bad_training_input_is_a_clear_error(questioner_path, tmp_path, args, needle):
    from synthetic_runs import write_run

    write_run(tmp_path / "zs", ["a?", "b?", "c?"], [0.9, 0.1, 0.2])
    args = [a.replace("NOWHERE", str(tmp_path / "nowhere")).replace("ZS", str(tmp_path / "zs")) for a in args]
    run = tmp_path / "run"
    result = redlat(*_redteam_args(questioner_path, run, 4, "--no-progress", *args))
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr
    assert not run.exists()


def test_compare_bad_input(tmp_path):
    result = redlat("compare", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "not a redlat run directory" in result.stderr
    result = redlat("compare")
    assert result.returncode != 0
