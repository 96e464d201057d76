"""The two LAT recipes for language models. casper2024 (Casper et al.'s code): one L2 ball per sequence in units of
each hidden dimension's spread, perturbed activations clipped to their observed range, the loss on the whole dialogue,
step eps / steps. sheshadri2024: per-token L2 on the prompt, the loss on the completion. Both named in configs and
rows."""

from __future__ import annotations

import pytest
import torch

from redlat.adversarial.hooks import captured, perturbed
from redlat.adversarial.lm_layers import lm_defence, lm_task
from redlat.adversarial.objectives import token_losses, untargeted_lm
from redlat.adversarial.pgd import PGDSettings, _Frame, group_norms, pgd
from redlat.config import LMDefenceSpec, TrojansLMConfig
from redlat.errors import ConfigError


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50, n_positions=32)).eval()


def _batch():
    torch.manual_seed(3)
    ids = torch.randint(0, 50, (3, 7))
    attention = torch.ones(3, 7, dtype=torch.long)
    attention[0, 5:] = 0
    attention[1, 3:] = 0
    prompt = attention.clone()
    prompt[:, 2:] = 0  # the first two tokens are the prompt
    labels = ids.masked_fill(prompt.bool() | (attention == 0), -100)  # the completion only
    return {"input_ids": ids, "attention_mask": attention, "labels": labels, "prompt_mask": prompt}


def test_spread_scale_is_each_dimensions_deviation_over_the_mean_plus_a_tenth_of_the_mean_magnitude():
    torch.manual_seed(0)
    value = torch.randn(2, 5, 3) * torch.tensor([10.0, 1.0, 0.1])
    mask = torch.ones(2, 5)
    mask[1, 3:] = 0
    value[1, 3:] = 1000.0  # padding: left out of the statistics
    frame = _Frame.of(value, PGDSettings(scaling="spread", clip="observed"), mask)
    rows = value[mask.bool()]
    std = rows.std(dim=0)
    expected = std / std.mean() + rows.abs().mean() / 10
    assert torch.allclose(frame.scale, expected)
    assert frame.scale[0] > frame.scale[1] > frame.scale[2]
    assert frame.bounds == (float(rows.min()), float(rows.max()))  # the padding's 1000 is not the max


@pytest.mark.parametrize("layer", ["transformer.wte", "transformer.h.0"])
def test_casper_attack_one_ball_per_sequence_in_spread_units_clipped_to_the_observed_range(layer):
    model, batch = _tiny_gpt2(), _batch()
    mask = batch["attention_mask"]
    settings = PGDSettings(norm="l2", eps=3.0, steps=6, step_size=0.5, per="example", scaling="spread",
                           clip="observed")
    whole = {**batch, "labels": batch["input_ids"].masked_fill(mask == 0, -100)}
    result = pgd(model, untargeted_lm(whole), [layer], settings, mask=mask)
    with torch.no_grad(), captured(model, [layer]) as acts:
        model(input_ids=batch["input_ids"], attention_mask=mask)
    clean = acts[layer]
    frame = _Frame.of(clean, settings, mask)
    delta = result.deltas[layer]  # what is added to the activation
    assert torch.all(delta[mask == 0] == 0)  # padding untouched
    assert result.norms[layer].shape == (3,)  # one norm per sequence ...
    assert torch.all(result.norms[layer] <= 3.0 * (1 + 1e-5))  # ... inside the ball, in spread units
    assert torch.allclose(group_norms(delta / frame.scale, "l2", "example"), result.norms[layer], atol=1e-5)
    lo, hi = frame.bounds
    moved = (clean + delta)[mask.bool()]
    assert moved.min() >= lo - 1e-5 and moved.max() <= hi + 1e-5  # within the clean activations' range
    with torch.no_grad(), perturbed(model, result.deltas, mask=mask):
        adversarial = untargeted_lm(whole)(model).loss
    assert adversarial.mean() > result.clean.loss.mean()


def test_dialogue_task_scores_every_real_token_and_lets_every_one_be_perturbed():
    model, batch = _tiny_gpt2(), _batch()
    dialogue, completion = lm_task("casper2024"), lm_task("sheshadri2024")
    assert dialogue.loss_on == "dialogue" and completion.loss_on == "completion"
    every = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        assert torch.allclose(dialogue.loss(model, batch), token_losses(model, batch, every))
        assert torch.allclose(completion.loss(model, batch), token_losses(model, batch, batch["labels"]))
        assert not torch.allclose(dialogue.loss(model, batch), completion.loss(model, batch))
        assert torch.allclose(dialogue.untargeted(batch)(model).loss, dialogue.loss(model, batch))
    assert torch.equal(dialogue.mask(batch, targeted=False), batch["attention_mask"])
    assert torch.equal(completion.mask(batch, targeted=False), batch["prompt_mask"])
    with pytest.raises(ConfigError, match="targeted LAT scores completions"):
        dialogue.targeted(batch)


def test_lm_defence_builds_each_recipes_attack():
    model, batch = _tiny_gpt2(), _batch()
    casper = lm_defence("lat", [1], 8.0, model, batch, recipe="casper2024", steps=4)
    a = casper.attack
    assert (a.norm, a.per, a.eps, a.alpha, a.scaling, a.clip) == ("l2", "example", 8.0, 2.0, "spread", "observed")
    assert casper.layers == ("transformer.h.0",)
    token = lm_defence("lat", [1], 0.5, model, batch, steps=4).attack
    assert (token.per, token.scaling, token.clip) == ("token", "none", "none")
    assert token.alpha == pytest.approx(2.5 * token.eps / 4) and token.eps != 0.5  # relative, made absolute
    with pytest.raises(ConfigError, match="untargeted"):
        lm_defence("targeted-lat", [1], 1.0, model, batch, recipe="casper2024")
    with pytest.raises(ConfigError, match="unknown LAT recipe"):
        lm_task("madry2018")  # type: ignore[arg-type]


def test_recipe_in_names_identity_and_validation():
    casper = LMDefenceSpec(kind="lat", layers=(4,), eps=8, recipe="casper2024")
    assert casper.name == "lat-4-8-casper"
    assert LMDefenceSpec(kind="at", eps=2, recipe="casper2024").name == "at-2-casper"
    assert LMDefenceSpec(recipe="casper2024").name == "none-casper"
    assert LMDefenceSpec(kind="lat", layers=(4,), eps=0.1).name == "lat-4-0.1x"
    with pytest.raises(ValueError, match="relative_eps"):
        LMDefenceSpec(kind="lat", layers=(4,), eps=8, recipe="casper2024", relative_eps=True)
    with pytest.raises(ValueError, match="untargeted"):
        LMDefenceSpec(kind="targeted-lat", layers=(4,), eps=1, recipe="casper2024")
    cfg = TrojansLMConfig(defences=[{"kind": "none"}, {"kind": "lat", "layers": [4], "eps": 8,
                                                        "recipe": "casper2024"}])
    stored = cfg.identity()["defences"]
    assert "recipe" not in stored[0] and stored[1]["recipe"] == "casper2024"  # old sweeps keep their identity


def test_a_stored_sweep_with_casper_rows_validates_again():
    """The stored config (model_dump) of a sweep with casper2024 rows is read back by `summary` and the report."""
    cfg = TrojansLMConfig(defences=[{"kind": "none", "recipe": "casper2024"},
                                    {"kind": "lat", "layers": [4], "eps": 8, "recipe": "casper2024"},
                                    {"kind": "lat", "layers": [4], "eps": 0.1}])
    stored = cfg.model_dump(mode="json")
    assert "relative_eps" not in stored["defences"][1] and stored["defences"][2]["relative_eps"] is True
    again = TrojansLMConfig.model_validate(stored)
    assert again == cfg and again.fingerprint() == cfg.fingerprint()
    from redlat.experiments.trojans_lm import layout

    assert "lat-4-8-casper" in layout(stored).defence_names
