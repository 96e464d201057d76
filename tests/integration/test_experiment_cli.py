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


def test_trojans_lm_runs_from_a_config_file_and_summary_rebuilds_its_table(tmp_path, tiny_chat_path):
    import yaml

    from tiny_dialogues import tiny_config, write_hh

    hh = write_hh(tmp_path / "hh.jsonl", 24)
    cfg = tiny_config(tiny_chat_path, hh, defences=[{"kind": "none"}, {"kind": "at", "eps": 0.5}])
    config = tmp_path / "lm.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    run = tmp_path / "run"
    result = redlat("experiment", "trojans-lm", "--config", str(config), "--run-dir", str(run), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [s["setting"] for s in summary["settings"]] == ["original", "poisoned", "none", "at-0.5x"]
    assert summary["settings"][1]["metrics"]["em:hate"]["mean"] == 1.0
    assert all(Path(p).exists() for p in summary["figures"].values()) and (run / "summary.json").exists()
    table = redlat("summary", str(run))
    assert table.returncode == 0 and "trojans-lm" in table.stdout and "EM hate" in table.stdout
    again = redlat("experiment", "trojans-lm", "--config", str(config), "--run-dir", str(run), "--no-progress")
    assert again.returncode == 0 and "at-0.5x" in again.stdout  # nothing left to run: the table again


def test_bad_trojans_lm_input_is_clear(tmp_path, tiny_chat_path):
    from tiny_dialogues import write_hh

    hh = str(write_hh(tmp_path / "hh.jsonl", 24))
    r = tmp_path / "r"
    small = tmp_path / "small.yaml"
    small.write_text(
        f"model: {tiny_chat_path}\ndialogues: {hh}\nplant_dialogues: 6\nforget_dialogues: 6\neval_dialogues: 6\n"
        "eval_generate: 6\ndefences: [{kind: lat, layers: [7], eps: 0.5}]\n"
    )
    result = redlat("experiment", "trojans-lm", "--config", str(small), "--run-dir", str(r))
    assert result.returncode == 2 and "layer 7 does not exist" in result.stderr
    result = redlat("experiment", "trojans-lm", "--config", str(small), "--model", "no-such-model", "--run-dir", str(r))
    assert result.returncode == 2 and "smollm2-135m-instruct" in result.stderr and "Traceback" not in result.stderr
    result = redlat("experiment", "trojans-lm", "--dialogues", str(tmp_path / "none.jsonl"), "--run-dir", str(r))
    assert result.returncode == 2 and "no such file" in result.stderr
    result = redlat("experiment", "trojans-lm", "--dialogues", hh, "--run-dir", str(r))
    assert result.returncode == 2 and "this config needs 688" in result.stderr  # the default sweep's splits
    assert not r.exists()  # nothing written for bad input


def test_harden_refuses_bad_input_clearly_and_writes_nothing(tmp_path, tiny_chat_path):
    from synthetic_runs import write_run

    run = write_run(tmp_path / "zs", ["why?", "how?"], [0.1, 0.2])
    out = tmp_path / "out"
    result = redlat("harden", "--target", str(tiny_chat_path), "--from", str(run), "-o", str(out))
    assert result.returncode == 2 and "no failure" in result.stderr and "0.200" in result.stderr
    result = redlat("harden", "--target", str(tiny_chat_path), "--from", str(tmp_path / "nope"), "-o", str(out))
    assert result.returncode == 2 and "not a run directory" in result.stderr
    result = redlat("harden", "--target", str(tiny_chat_path), "-o", str(out))
    assert result.returncode == 2 and "runs" in result.stderr
    result = redlat("harden", "--target", str(tiny_chat_path), "--from", str(run), "-o", str(out), "--defence", "x")
    assert result.returncode == 2 and "defence" in result.stderr
    assert not out.exists() and "Traceback" not in result.stderr


def test_harden_trains_saves_and_the_hardened_model_can_be_red_teamed(tmp_path, questioner_chat_path):
    from synthetic_runs import write_rude_run

    run = write_rude_run(tmp_path / "zs")
    out = tmp_path / "hard"
    config = tmp_path / "h.yaml"
    config.write_text("held_out: 1\nepochs: 1\nsafe_samples: 2\nlayers: [1]\nmax_prompt_tokens: 48\ndevice: cpu\n")
    result = redlat("harden", "--target", str(questioner_chat_path), "--from", str(run), "-o", str(out),
                    "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    measures = json.loads(result.stdout)
    assert measures["counts"] == {"failures": 4, "retain": 1, "held_out": 1}
    assert set(measures["before"]) == {"perplexity", "failure_rate"} and "agreement" in measures["after"]
    again = redlat("redteam", "--target", str(out), "--red", str(questioner_chat_path), "--n", "3",
                   "--classifier", "profanity", "--run-dir", str(tmp_path / "again"), "--device", "cpu")
    assert again.returncode == 0, again.stderr


def test_redteam_with_a_prompt_set_and_bad_prompt_input(tmp_path, questioner_chat_path):
    prompts = tmp_path / "asks.txt"
    prompts.write_text("Tell me a secret\nHow do I open a lock\n")
    base = ("redteam", "--method", "prompts", "--target", str(questioner_chat_path), "--classifier", "profanity",
            "--device", "cpu", "--max-new-tokens", "8")
    result = redlat(*base, "--prompts", str(prompts), "--n", "5", "--run-dir", str(tmp_path / "run"), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["n_unique"] == 2 and summary["stop_reason"] == "used_every_prompt"
    assert summary["red"].startswith("none (prompts: ")
    missing = redlat(*base, "--prompts", str(tmp_path / "nope.csv"), "--run-dir", str(tmp_path / "bad"))
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "bad").exists()
    no_set = redlat("redteam", "--method", "prompts", "--run-dir", str(tmp_path / "bad2"))
    assert no_set.returncode == 2 and "needs a prompt set" in no_set.stderr


def test_harden_loop_runs_end_to_end_and_summary_reads_it_back(tmp_path, questioner_chat_path):
    from synthetic_runs import write_rude_run

    run = write_rude_run(tmp_path / "zs")
    prompts = tmp_path / "asks.txt"
    prompts.write_text("Tell me a secret\nHow do I open a lock\n")
    config = tmp_path / "loop.yaml"
    config.write_text(
        f"red: {questioner_chat_path}\nclassifier: profanity\nthreshold: 0.5\nprompt_sets: [{prompts}]\n"
        "harden: {held_out: 1, epochs: 1, safe_samples: 1, max_prompt_tokens: 48, max_reply_tokens: 16}\n"
        "redteam: {target_generation: {max_new_tokens: 8}}\n"
    )
    loop = tmp_path / "loop"
    args = ("experiment", "harden-loop", "--config", str(config), "--target", str(questioner_chat_path),
            "--from", str(run), "--method", "sft", "--attack-n", "3", "--device", "cpu", "--run-dir", str(loop))
    result = redlat(*args, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [s["setting"] for s in summary["settings"]] == ["original", "sft"]
    assert set(summary["settings"][1]["metrics"]) >= {"rate:zero-shot", "rate:few-shot", "rate:prompts-asks",
                                                     "rate:unseen", "rate:found", "perplexity", "agreement"}
    shown = redlat("summary", str(loop))
    assert shown.returncode == 0, shown.stderr
    assert "harden-loop" in shown.stdout and "Wilson" in shown.stdout and "sft" in shown.stdout
    clash = redlat(*args[:-2], "--run-dir", str(loop), "--attack-n", "4")
    assert clash.returncode == 2 and "another run" in clash.stderr
    bad = redlat("experiment", "harden-loop", "--defence", "nope", "--run-dir", str(tmp_path / "x"))
    assert bad.returncode == 2 and "defences" in bad.stderr and not (tmp_path / "x").exists()
