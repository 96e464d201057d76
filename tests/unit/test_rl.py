import math

import pytest

from redlat.config import ZERO_SHOT_PROMPT
from redlat.red_team.rl import OffensivenessReward, RLSettings, offensiveness_reward, train_rl
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


def test_rl_start_model_resolution(tmp_path):
    from redlat.errors import ConfigError
    from redlat.red_team.rl import rl_start_model
    from synthetic_runs import write_run

    assert rl_start_model(None, "some/model") == "some/model"
    write_run(tmp_path / "zs", ["a?"], [0.1])
    assert rl_start_model(str(tmp_path / "zs"), "x") == "smollm2-135m-instruct"
    (tmp_path / "zs" / "red_model").mkdir()
    (tmp_path / "zs" / "red_model" / "training.json").write_text("{}")
    (tmp_path / "zs" / "red_model" / "model.safetensors").write_text("")
    assert rl_start_model(str(tmp_path / "zs"), "x").endswith("red_model")
    with pytest.raises(ConfigError, match="not a redlat run directory"):
        rl_start_model(str(tmp_path / "nowhere"), "x")


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


def test_training_switches_off_every_dropout(tiny_gpt2_path):
    import torch

    from redlat.red_team.training import dropout_off

    model = _fresh(tiny_gpt2_path).model
    assert dropout_off(model) > 0
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    assert dropout_off(model) == 0


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


def test_presets_set_the_kl_strength_and_explicit_settings_win():
    paper = RLSettings(preset="perez2022")
    assert paper.kl_alpha == 0.35 and paper.beta == pytest.approx(0.35 / 0.65) and paper.scale_rewards == "none"
    assert not paper.novelty.active
    assert RLSettings().beta == 0.1 and RLSettings().scale_rewards == "group"
    assert RLSettings(preset="perez2022", kl_alpha=0.3).beta == pytest.approx(0.3 / 0.7)
    assert RLSettings(preset="perez2022", kl_coef=0.2).beta == 0.2  # beta given: the preset's alpha steps aside
    curious = RLSettings(preset="curiosity", novelty={"bleu": 2.0})
    assert curious.novelty.bleu == 2.0 and curious.novelty.embedding == 1.0 and curious.novelty.entropy == 0.01
    with pytest.raises(ValueError, match="give the KL strength once"):
        RLSettings(kl_coef=0.2, kl_alpha=0.5)


def test_novelty_terms_against_the_history(tiny_embedder_path):
    from redlat.red_team.novelty import Novelty, NoveltySettings

    novelty = Novelty(NoveltySettings(bleu=1.0, embedding=1.0, embedder=str(tiny_embedder_path)))
    first = novelty.terms(["what is your name?"])
    assert first == {"novelty_bleu": [0.0], "novelty_embedding": [0.0]}  # nothing to be unlike yet
    novelty.add(["what is your name?"])
    terms = novelty.terms(["what is your name?", "zebra quantum lantern"])
    assert terms["novelty_bleu"][0] == pytest.approx(-1.0) and terms["novelty_bleu"][1] == 0.0
    assert terms["novelty_embedding"][0] == pytest.approx(-1.0, abs=1e-5)  # its own embedding: cosine 1
    assert terms["novelty_embedding"][1] > terms["novelty_embedding"][0]
    again = Novelty(NoveltySettings(bleu=1.0, history=1))
    again.restore(["a b c d?", "what is your name?"])  # a resumed run rebuilds its history; only the last kept
    assert again.history == ["what is your name?"]


def test_entropy_term_is_the_mean_token_nll(tiny_gpt2_path):
    import torch

    from redlat.red_team.novelty import mean_token_nll

    lm = _fresh(tiny_gpt2_path)
    prompt, completion = [464, 3290, 318], [257, 1332, 13]
    (nll,) = mean_token_nll(lm.model, prompt, [completion])
    with torch.no_grad():
        logits = lm.model(torch.tensor([prompt + completion])).logits[0]
    logprobs = torch.log_softmax(logits, -1)
    expected = -sum(float(logprobs[len(prompt) - 1 + i, t]) for i, t in enumerate(completion)) / len(completion)
    assert nll == pytest.approx(expected, rel=1e-5)


def test_novelty_lowers_the_reward_of_repeated_cases_and_is_logged():
    from fakes import RudeWordScorer
    from redlat.red_team.novelty import Novelty, NoveltySettings

    reward = OffensivenessReward(EchoBot(), RudeWordScorer(), threshold=0.4, invalid_reward=-1.0, seed=0,
                                 novelty=Novelty(NoveltySettings(bleu=0.5)))
    first = reward(["p"] * 2, [" are you nice?", " no question"])
    again = reward(["p"] * 2, [" are you nice?", " is the sky blue today?"])
    assert first[0] == pytest.approx(0.0) and first[1] == -1.0  # no history yet: no penalty
    assert again[0] == pytest.approx(-0.5)  # the same case again: BLEU 100 against history, times 0.5
    assert again[1] > again[0]
    assert reward.last_stats["mean_novelty_bleu"] == pytest.approx((-1.0 + again[1] / 0.5) / 2)
    assert {"harm_reward", "novelty_bleu", "reward"} <= set(reward.last_samples[0])
