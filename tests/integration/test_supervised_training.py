"""Supervised training of the red LM on tiny models (TRL SFT): the loss falls, and a whole run goes end to end."""

from functools import partial

import pytest
import torch

from fakes import tiny_parts
from redlat.config import ZERO_SHOT_PROMPT, RedGeneration, RedTeamConfig
from redlat.red_team.few_shot import Pool, PoolCase
from redlat.red_team.supervised import SupervisedSettings, select_cases, train_supervised
from redlat.red_team.training import is_complete_model_dir
from redlat.store import RunStore

POOL = Pool(run_id="p", run_dir="pool", threshold=0.5, cases=tuple(
    PoolCase(i, f"question number {i}?", score) for i, score in enumerate([0.9, 0.1, 0.8, 0.7, 0.05] * 6)))


def _fresh(path):
    from redlat.models.causal_lm import load_causal_lm

    return load_causal_lm(str(path), device="cpu")


@pytest.mark.parametrize("lora", [False, True])
def test_training_lowers_the_loss_on_the_failures_and_changes_the_weights(tiny_gpt2_path, tmp_path, lora):
    lm = _fresh(tiny_gpt2_path)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    cases = select_cases(POOL, SupervisedSettings(top=20), seed=0)
    settings = SupervisedSettings(top=20, epochs=3, learning_rate=3e-2 if lora else 1e-3, batch_size=4,
                                  lora={"enabled": lora, "r": 4, "alpha": 8})
    with RunStore(tmp_path / "run", create=True) as store:
        info = train_supervised(lm, cases, settings, prompt=ZERO_SHOT_PROMPT, out_dir=tmp_path / "run" / "red_model",
                                store=store, seed=0, progress=False)
        steps = store.training_steps("supervised")
    assert info["loss_after"]["train"] < info["loss_before"]["train"] - (0.2 if lora else 0.5)
    assert info["loss_after"]["validation"] < info["loss_before"]["validation"]
    assert info["n_train"] == 18 and info["n_validation"] == 2 and info["steps"] == 15
    assert [s["step"] for s in steps] == list(range(16))  # before training, then every optimizer step
    assert is_complete_model_dir(tmp_path / "run" / "red_model")
    saved = _fresh(tmp_path / "run" / "red_model")
    changed = [k for k, v in saved.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "training left every weight as it was"
    assert not any("lora" in k for k in saved.model.state_dict()), "adapters must be merged into the saved model"


def test_supervised_run_end_to_end_and_resume(questioner_chat_lm, tmp_path):
    from redlat.red_team.runner import redteam

    parts = partial(tiny_parts, questioner_chat_lm)

    common = dict(red="q", target="q", classifiers=[{"name": "rude-words"}], device="cpu",
                  red_generation=RedGeneration(batch_size=16, max_new_tokens=16))
    zs = RedTeamConfig(n=30, **common)
    redteam(zs, tmp_path / "zs", components=parts(zs))
    weights = {k: v.clone() for k, v in questioner_chat_lm.model.state_dict().items()}
    sl = RedTeamConfig(n=10, method="supervised", from_run=str(tmp_path / "zs"),
                       supervised={"top": 10, "batch_size": 4}, **common)
    result = redteam(sl, tmp_path / "sl", components=parts(sl))
    # the shared red/target model was copied before training: the target is untouched
    assert all(torch.equal(v, weights[k]) for k, v in questioner_chat_lm.model.state_dict().items())
    assert result.summary["method"] == "supervised" and result.summary["n_unique"] == 10
    with RunStore(tmp_path / "sl") as store:
        plan = store.run_info().provenance["method"]
        assert plan["n_train"] == 9 and plan["n_validation"] == 1
        assert store.get_meta("training")["selection"].startswith("the 10 highest-scoring")
        assert store.get_meta("trained_red")["source"].endswith("red_model")
    assert redteam(sl, tmp_path / "sl", components=parts(sl)).resumed  # complete: nothing redone

