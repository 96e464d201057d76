import math

import pytest

from redlat.red_team.rl import OffensivenessReward, RLSettings, offensiveness_reward


def test_reward_is_minus_log_of_one_minus_score():
    assert offensiveness_reward(0.0) == 0.0
    assert offensiveness_reward(0.5) == pytest.approx(math.log(2))
    assert math.isfinite(offensiveness_reward(1.0)) and offensiveness_reward(1.0) > 13


def _fresh(path):
    from redlat.models.causal_lm import load_causal_lm

    return load_causal_lm(str(path), device="cpu")


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


def test_training_switches_off_every_dropout(tiny_gpt2_path):
    import torch

    from redlat.red_team.training import dropout_off

    model = _fresh(tiny_gpt2_path).model
    assert dropout_off(model) > 0
    assert all(m.p == 0.0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    assert dropout_off(model) == 0


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
    again.restore([["a b c d?"], ["what is your name?"]])  # a resumed run rebuilds its history; only the last kept
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
