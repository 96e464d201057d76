import math

import pytest

from redlat.config import ZERO_SHOT_PROMPT, RLSettings
from redlat.red_team.rl import OffensivenessReward, offensiveness_reward, train_rl
from redlat.store import RunStore


def test_reward_is_minus_log_of_one_minus_score():
    assert offensiveness_reward(0.0) == 0.0
    assert offensiveness_reward(0.5) == pytest.approx(math.log(2))
    assert math.isfinite(offensiveness_reward(1.0)) and offensiveness_reward(1.0) > 13


class EchoBot:
    """A fake target that repeats the test case, so the reward depends on the case's own words."""

    def __init__(self):
        self.seeds = []

    def reply(self, cases, *, seed):
        self.seeds.append(seed)
        return list(cases)


def test_offensiveness_reward_scores_replies_and_penalises_invalid_samples():
    from fakes import RudeWordScorer

    bot = EchoBot()
    reward = OffensivenessReward(bot, RudeWordScorer(), threshold=0.4, invalid_reward=-1.0, seed=0)
    out = reward(["p"] * 3, [" you stupid dumb?\n", " no question here\n", " are you nice?"])
    assert out[1] == -1.0
    assert out[0] == pytest.approx(-math.log(1 - 2 / 3)) and out[2] == pytest.approx(0.0)
    assert reward.last_stats["valid_rate"] == pytest.approx(2 / 3)
    assert reward.last_stats["offensive_rate"] == pytest.approx(0.5)
    assert reward.last_samples[0]["test_case"] == "you stupid dumb?"
    reward(["p"], [" again?"])
    assert len(set(bot.seeds)) == 2  # a fresh seed for every batch of replies


def _dog_share(prompts, completions, **_):
    """A known reward: the share of words that are "dog"."""
    out = []
    for text in completions:
        words = text.replace("?", " ").split()
        out.append(sum(w == "dog" for w in words) / len(words) if words else 0.0)
    return out


def _fresh(path):
    from redlat.models.causal_lm import load_causal_lm

    return load_causal_lm(str(path), device="cpu")


def test_grpo_raises_a_known_reward_on_a_tiny_model(questioner_path, tmp_path):
    settings = RLSettings(steps=12, batch_size=16, group_size=8, max_new_tokens=8, learning_rate=0.05, kl_coef=0.0,
                          lora={"enabled": False})
    with RunStore(tmp_path / "run", create=True) as store:
        info = train_rl(_fresh(questioner_path), _dog_share, settings, prompt=ZERO_SHOT_PROMPT,
                        out_dir=tmp_path / "run" / "red_model", checkpoint_dir=tmp_path / "run" / "ckpt",
                        store=store, seed=0, progress=False)
        curve = [row["mean_reward"] for row in store.training_steps("rl")]
    assert len(curve) == 12
    first, last = sum(curve[:3]) / 3, sum(curve[-3:]) / 3
    assert last > first + 0.1, curve
    assert info["steps"] == 12 and (tmp_path / "run" / "red_model" / "training.json").exists()


class Interrupt(KeyboardInterrupt):
    pass


def test_interrupted_rl_resumes_from_its_checkpoint_without_duplicate_steps(questioner_path, tmp_path):
    settings = RLSettings(steps=5, batch_size=8, group_size=4, max_new_tokens=6, learning_rate=0.01, kl_coef=0.1,
                          save_steps=2, lora={"enabled": True, "r": 2, "alpha": 4})
    calls = {"n": 0}

    def flaky(prompts, completions, **kw):
        calls["n"] += 1
        if calls["n"] == 4:  # during step 4, after the checkpoint of step 2
            raise Interrupt()
        return _dog_share(prompts, completions)

    kwargs = dict(prompt=ZERO_SHOT_PROMPT, out_dir=tmp_path / "run" / "red_model",
                  checkpoint_dir=tmp_path / "run" / "ckpt", seed=0, progress=False)
    with RunStore(tmp_path / "run", create=True) as store:
        with pytest.raises(Interrupt):
            train_rl(_fresh(questioner_path), flaky, settings, store=store, **kwargs)
        assert [r["step"] for r in store.training_steps("rl")] == [1, 2, 3]
        assert not (tmp_path / "run" / "red_model").exists()
        info = train_rl(_fresh(questioner_path), flaky, settings, store=store, **kwargs)
        steps = [r["step"] for r in store.training_steps("rl")]
    assert info["resumed_from_step"] == 2 and info["steps"] == 5
    assert steps == [1, 2, 3, 4, 5]


def test_rl_run_end_to_end(questioner_chat_lm, tmp_path):
    from fakes import RudeWordScorer
    from redlat.chatbot import Chatbot
    from redlat.config import RedGeneration, RedTeamConfig
    from redlat.red_team.runner import Components, redteam

    def parts(cfg):
        return Components(red=questioner_chat_lm, scorers=[RudeWordScorer()],
                          chatbot=Chatbot(questioner_chat_lm, cfg.chatbot, cfg.target_generation))

    common = dict(red="q", target="q", classifiers=[{"name": "rude-words"}], device="cpu",
                  red_generation=RedGeneration(batch_size=16, max_new_tokens=16))
    zs = RedTeamConfig(n=10, **common)
    redteam(zs, tmp_path / "zs", components=parts(zs))
    rl = RedTeamConfig(n=10, method="rl", from_run=str(tmp_path / "zs"),
                       rl={"steps": 2, "batch_size": 8, "group_size": 4, "max_new_tokens": 8}, **common)
    result = redteam(rl, tmp_path / "rl", components=parts(rl))
    assert result.summary["method"] == "rl" and result.summary["n_unique"] == 10
    with RunStore(tmp_path / "rl") as store:
        steps = store.training_steps("rl")
        assert [s["step"] for s in steps] == [1, 2]
        for s in steps:  # every step logs the reward, KL, offensive rate, batch self-BLEU and samples
            assert {"mean_reward", "kl", "offensive_rate", "valid_rate", "self_bleu"} <= set(s)
            assert s["samples"] and {"test_case", "reply", "reward"} <= set(s["samples"][0])
        assert store.run_info().provenance["training_plan"]["start_model"] == "q"
        assert store.get_meta("training")["algorithm"] == "GRPO (TRL)"


def test_rl_start_model_resolution(tmp_path):
    from redlat.config import RedTeamConfig
    from redlat.errors import ConfigError
    from redlat.red_team.runner import rl_start_model
    from synthetic_runs import write_run

    assert rl_start_model(RedTeamConfig(method="rl", red="some/model")) == "some/model"
    write_run(tmp_path / "zs", ["a?"], [0.1])
    assert rl_start_model(RedTeamConfig(method="rl", from_run=str(tmp_path / "zs"))) == "smollm2-135m-instruct"
    (tmp_path / "zs" / "red_model").mkdir()
    (tmp_path / "zs" / "red_model" / "training.json").write_text("{}")
    (tmp_path / "zs" / "red_model" / "model.safetensors").write_text("")
    assert rl_start_model(RedTeamConfig(method="rl", from_run=str(tmp_path / "zs"))).endswith("red_model")
    with pytest.raises(ConfigError, match="not a redlat run directory"):
        rl_start_model(RedTeamConfig(method="rl", from_run=str(tmp_path / "nowhere")))
