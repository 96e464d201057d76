"""The trojans-text sweep on a tiny BERT classifier and tiny tweets: the whole loop (poison, defend, measure every
held-out attack), resume after an interruption stores exactly what one run stores, the paraphrases are written once,
layers resolve, and the CLI prints the table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import InterruptAfter
from redlat.errors import ConfigError, RunDirMismatchError
from redlat.experiments.pareto import summarize_experiment
from redlat.experiments.trojans_text import POISONED, run_trojans_text
from synthetic_runs import experiment_results as _results
from tiny_tweets import tiny_text_config, write_tiny_bert, write_tweets


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def tweets(tmp_path_factory) -> Path:
    return write_tweets(tmp_path_factory.mktemp("tweets") / "tweets.csv", 48)


def test_the_whole_loop_plants_trojans_defends_and_measures_every_attack(tiny_bert, tweets, tiny_chat_path, tmp_path):
    cfg = tiny_text_config(tiny_bert, tweets, tiny_chat_path)
    store = run_trojans_text(cfg, tmp_path / "run")
    with store:
        summary = summarize_experiment(store)
    m = {s["setting"]: {k: v["mean"] for k, v in s["metrics"].items()} for s in summary["settings"]}
    assert list(m) == [POISONED, "none", "at-0.5x", "lat-1-0.5x"]
    poisoned = m[POISONED]
    assert poisoned["clean_acc"] > 0.8  # the toy rule is learnt
    assert poisoned["asr:rare-token"] > 0.5 and poisoned["asr:hashtags"] > 0.5  # and the trojans with it
    for setting in m.values():
        for attack in ("typo", "leet", "homoglyph", "wordsub", "hotflip", "paraphrase"):
            assert 0.0 <= setting[f"robust:{attack}"] <= 1.0
        held = [setting[f"robust:{a}"] for a in ("typo", "leet", "homoglyph", "wordsub", "hotflip", "paraphrase")]
        assert setting["heldout_acc"] == pytest.approx(sum(held) / 6)
    assert m["lat-1-0.5x"]["eps"] > 0 and m["lat-1-0.5x"]["eps:1"] == m["lat-1-0.5x"]["eps"]
    assert m["at-0.5x"]["eps:0"] > 0 and m["none"]["eps"] == 0
    assert summary["experiment"] == "trojans-text" and set(summary["pareto"]) == {
        "clean_vs_trojan_success", "clean_vs_heldout_robustness"}
    rewrites = json.loads((tmp_path / "run" / "paraphrases.json").read_text())
    assert len(rewrites["rewrites"]) == len(rewrites["texts"]) == 6  # 3 attacked tweets per class
    assert (tmp_path / "run" / "base_models" / "seed-0.pt").exists()


def test_an_interrupted_sweep_resumes_to_the_same_results(tiny_bert, tweets, tiny_chat_path, tmp_path):
    cfg = tiny_text_config(tiny_bert, tweets, tiny_chat_path, eval_attacks=["typo", "paraphrase"],
                           defences=[{"kind": "none"}, {"kind": "lat", "layers": [1], "eps": 0.5}])
    run_trojans_text(cfg, tmp_path / "whole").close()
    with pytest.raises(KeyboardInterrupt):
        run_trojans_text(cfg, tmp_path / "parted", progress=InterruptAfter(2))
    assert {r[0] for r in _results(tmp_path / "parted")} == {POISONED, "none"}
    written = (tmp_path / "parted" / "paraphrases.json").stat().st_mtime_ns
    resumed: list[str] = []
    run_trojans_text(cfg, tmp_path / "parted", progress=resumed.append).close()
    assert len(resumed) == 1 and resumed[0].startswith("lat-1-0.5x")  # only the missing setting ran
    assert _results(tmp_path / "parted") == _results(tmp_path / "whole")
    assert (tmp_path / "parted" / "paraphrases.json").stat().st_mtime_ns == written  # written once
    with pytest.raises(RunDirMismatchError):
        run_trojans_text(cfg.model_copy(update={"finetune_lr": 1e-2}), tmp_path / "parted")


def test_bad_layers_and_models_fail_before_training(tiny_bert, tweets, tiny_chat_path, tmp_path):
    cfg = tiny_text_config(tiny_bert, tweets, tiny_chat_path, defences=[{"kind": "lat", "layers": [5], "eps": 0.5}])
    with pytest.raises(ConfigError, match="layer 5 does not exist"):
        run_trojans_text(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    from redlat.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="all-minilm-l6-v2"):
        run_trojans_text(cfg.model_copy(update={"model": str(tmp_path / "nowhere")}), tmp_path / "run")


def test_cli_prints_the_tables(tiny_bert, tweets, tiny_chat_path, tmp_path):
    import yaml

    cfg = tiny_text_config(tiny_bert, tweets, tiny_chat_path, eval_attacks=["leet", "wordsub"],
                           defences=[{"kind": "none"}])
    config = tmp_path / "text.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    result = subprocess.run([sys.executable, "-m", "redlat", "experiment", "trojans-text", "--config", str(config),
                             "--run-dir", str(tmp_path / "run"), "--no-progress"],
                            capture_output=True, text=True, timeout=600, env={**os.environ})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Trojans and defences in a text classifier" in out and "held-out attacks" in out
    assert "ASR rare-token" in out and "wordsub" in out and "poisoned" in out
