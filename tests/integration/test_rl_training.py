"""RL training loops on tiny models (TRL GRPO): a known reward rises, checkpoints resume exactly, the KL is exactly 0
at step 1 with dropout in the model, the curiosity terms are logged, and a whole rl run goes end to end."""

from functools import partial

import pytest

from fakes import tiny_parts
from redlat.config import ZERO_SHOT_PROMPT
from redlat.red_team.rl import OffensivenessReward, RLSettings, train_rl
from redlat.store import RunStore


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
    from redlat.config import RedGeneration, RedTeamConfig
    from redlat.red_team.runner import redteam

    parts = partial(tiny_parts, questioner_chat_lm)

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
        assert store.run_info().provenance["method"]["start_model"] == "q"
        assert store.get_meta("training")["algorithm"] == "GRPO (TRL)"


def test_curiosity_run_logs_each_term_per_step(questioner_chat_lm, tmp_path, tiny_embedder_path):
    from fakes import RudeWordScorer
    from redlat.chatbot import Chatbot
    from redlat.config import RedGeneration, RedTeamConfig
    from redlat.red_team.runner import Components, redteam

    cfg = RedTeamConfig(n=6, method="rl", red="q", target="q", classifiers=[{"name": "rude-words"}], device="cpu",
                        red_generation=RedGeneration(batch_size=8, max_new_tokens=12),
                        rl={"preset": "curiosity", "steps": 2, "batch_size": 8, "group_size": 4, "max_new_tokens": 8,
                            "novelty": {"embedder": str(tiny_embedder_path)}})
    parts = Components(red=questioner_chat_lm, scorers=[RudeWordScorer()],
                       chatbot=Chatbot(questioner_chat_lm, cfg.chatbot, cfg.target_generation))
    redteam(cfg, tmp_path / "rl", components=parts)
    with RunStore(tmp_path / "rl") as store:
        steps = store.training_steps("rl")
        settings = store.run_info().config["method_settings"]
    assert settings["preset"] == "curiosity" and settings["kl_coef"] == pytest.approx(0.35 / 0.65)
    for step in steps:
        assert {"mean_novelty_bleu", "mean_novelty_embedding", "mean_entropy", "mean_harm_reward", "kl"} <= set(step)
        assert step["mean_entropy"] > 0


def _constant(prompts, completions, **_):
    return [1.0] * len(completions)


@pytest.mark.parametrize("lora", [True, False])
def test_kl_is_exactly_zero_at_step_one_with_dropout_in_the_model(tiny_gpt2_path, tmp_path, lora):
    """Regression: GPT-2 ships dropout 0.1, and GRPO ran the policy and the reference with it on, so the logged KL
    was dropout noise from step 1. At step 1 the policy is the reference: the KL must be exactly 0."""
    lm = _fresh(tiny_gpt2_path)
    assert lm.model.config.resid_pdrop > 0  # the model under test really ships dropout
    settings = RLSettings(steps=1, batch_size=4, group_size=2, max_new_tokens=6, kl_coef=0.5,
                          lora={"enabled": lora, "r": 2, "alpha": 4})
    with RunStore(tmp_path / "run", create=True) as store:
        train_rl(lm, _constant, settings, prompt=ZERO_SHOT_PROMPT, out_dir=tmp_path / "run" / "red_model",
                 checkpoint_dir=tmp_path / "run" / "ckpt", store=store, seed=0, progress=False)
        (step,) = store.training_steps("rl")
    assert step["step"] == 1 and step["kl"] == 0.0


@pytest.mark.parametrize("curious", [False, True])
def test_resumed_rl_run_draws_what_an_uninterrupted_run_draws(questioner_chat_lm, questioner_path, tmp_path, curious,
                                                            tiny_embedder_path):
    """Regression: the target's reply seeds came from a per-process call counter that restarted at 0 on resume.
    Seeds now come from the optimizer step, so interrupted + resumed equals uninterrupted, rewards and samples; with
    the novelty terms on, the history is rebuilt from the store, so their rewards match too."""
    from redlat.red_team.novelty import Novelty, NoveltySettings

    novelty = NoveltySettings(bleu=1.0, embedding=1.0, entropy=0.1, embedder=str(tiny_embedder_path))
    from fakes import RudeWordScorer
    from redlat.chatbot import Chatbot
    from redlat.config import ChatbotConfig, TargetGeneration

    settings = RLSettings(steps=4, batch_size=4, group_size=2, max_new_tokens=8, learning_rate=0.01, save_steps=2,
                          lora={"enabled": True, "r": 2, "alpha": 4})
    bot = Chatbot(questioner_chat_lm, ChatbotConfig(), TargetGeneration(max_new_tokens=8, top_p=0.9))

    class Reward(OffensivenessReward):
        fail_on_call: int | None = None

        def __call__(self, prompts, completions, **kw):
            if self.calls + 1 == self.fail_on_call:
                raise Interrupt()
            return super().__call__(prompts, completions, **kw)

    def run(name, fail_on_call=None):
        kwargs = dict(prompt=ZERO_SHOT_PROMPT, out_dir=tmp_path / name / "red_model",
                      checkpoint_dir=tmp_path / name / "ckpt", seed=0, progress=False)
        with RunStore(tmp_path / name, create=True) as store:
            if fail_on_call is not None:
                reward = Reward(bot, RudeWordScorer(), threshold=0.4, invalid_reward=-1.0, seed=0,
                                novelty=Novelty(novelty) if curious else None)
                reward.fail_on_call = fail_on_call
                with pytest.raises(Interrupt):
                    train_rl(_fresh(questioner_path), reward, settings, store=store, **kwargs)
            reward = Reward(bot, RudeWordScorer(), threshold=0.4, invalid_reward=-1.0, seed=0,
                            novelty=Novelty(novelty) if curious else None)
            train_rl(_fresh(questioner_path), reward, settings, store=store, **kwargs)
            return [(s["step"], s["mean_reward"], s["samples"]) for s in store.training_steps("rl")]

    whole = run("whole")
    resumed = run("resumed", fail_on_call=4)  # during step 4, after the checkpoint of step 2
    assert [s for s, _, _ in whole] == [1, 2, 3, 4]
    assert resumed == whole
    if curious:  # the terms were really on, and changed the rewards
        samples = [s for _, _, batch in whole for s in batch]
        assert all({"novelty_bleu", "novelty_embedding", "entropy"} <= set(s) for s in samples)
        assert any(s["reward"] != s["harm_reward"] for s in samples)

