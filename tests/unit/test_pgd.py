"""PGD: every perturbation stays in its ball, attacks never help the model, state is restored, padding untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from redlat.adversarial.hooks import count_hooks
from redlat.adversarial.objectives import (
    classification_loss,
    targeted_classification,
    untargeted_classification,
    untargeted_lm,
)
from redlat.adversarial.pgd import PGDSettings, group_norms, pgd, project
from redlat.errors import ConfigError

NORM_EPS = [("linf", 0.1), ("l2", 1.0), ("l1", 4.0)]


@pytest.fixture(scope="module")
def digits_mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small MLP trained for a moment on real handwritten digits (pixels in [0, 1]), and 200 held-out images."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        classification_loss(model, x[:1500], y[:1500]).mean().backward()
        opt.step()
    return model.eval(), x[1500:1700], y[1500:1700]


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50, n_positions=32)).eval()


@pytest.mark.parametrize(("norm", "eps"), NORM_EPS)
@pytest.mark.parametrize("per", ["example", "token"])
def test_projection_lands_inside_the_ball_and_leaves_inside_points(norm, eps, per):
    torch.manual_seed(1)
    big = torch.randn(4, 5, 8) * 3
    inside = project(big, norm, eps, per)
    assert torch.all(group_norms(inside, norm, per) <= eps * (1 + 1e-5))
    assert torch.allclose(project(inside, norm, eps, per), inside, atol=1e-6)  # idempotent


def test_l1_projection_is_the_nearest_point():
    torch.manual_seed(2)
    v = torch.randn(1, 30)
    p = project(v, "l1", 2.0)
    assert abs(float(p.abs().sum()) - 2.0) < 1e-5  # v was outside, so the projection is on the sphere
    # No other point of the ball is closer: try many random points of the L1 sphere near p.
    for _ in range(200):
        q = project(p + 0.05 * torch.randn_like(p), "l1", 2.0)
        assert float((v - q).norm()) >= float((v - p).norm()) - 1e-6


@pytest.mark.parametrize(("norm", "eps"), NORM_EPS)
def test_untargeted_attack_stays_in_its_ball_and_never_helps_the_model(digits_mlp, norm, eps):
    model, x, y = digits_mlp
    settings = PGDSettings(norm=norm, eps=eps, steps=10, keep_best=True, bounds=(0.0, 1.0))
    for seed in range(3):
        gen = torch.Generator().manual_seed(seed)
        result = pgd(model, untargeted_classification(x, y), [""], settings, where="input", generator=gen)
        delta = result.deltas[""]
        assert torch.all(result.norms[""] <= eps * (1 + 1e-5))
        assert torch.all(x + delta >= 0) and torch.all(x + delta <= 1)
        with torch.no_grad():
            clean_loss = classification_loss(model, x, y)
            adv_loss = classification_loss(model, x + delta, y)
            clean_right = model(x).argmax(-1) == y
            adv_right = model(x + delta).argmax(-1) == y
        # per example, never below the clean loss unless the attack wins there (success comes before loss)
        assert torch.all((adv_loss >= clean_loss - 1e-5) | (clean_right & ~adv_right))
        assert not torch.any(adv_right & ~clean_right)  # no example is turned from wrong to right
        assert adv_loss.mean() > clean_loss.mean() + 0.1  # and it really attacks
        assert adv_right.float().mean() < clean_right.float().mean()


def test_targeted_attack_pulls_toward_the_target(digits_mlp):
    model, x, y = digits_mlp
    target = torch.full_like(y, 3)
    settings = PGDSettings(norm="l2", eps=2.0, steps=20, bounds=(0.0, 1.0))
    result = pgd(model, targeted_classification(x, target), [""], settings, where="input")
    with torch.no_grad():
        before = (model(x).argmax(-1) == 3).float().mean()
        after = (model(x + result.deltas[""]).argmax(-1) == 3).float().mean()
    assert after > before + 0.3


def test_latent_attack_on_a_hidden_layer_raises_the_loss(digits_mlp):
    model, x, y = digits_mlp
    result = pgd(model, untargeted_classification(x, y), ["2"], PGDSettings(norm="l2", eps=3.0, steps=8))
    assert result.deltas["2"].shape == (len(x), 64)  # shape read from the activation, not configured
    from redlat.adversarial.hooks import perturbed

    with torch.no_grad(), perturbed(model, result.deltas):
        adv = classification_loss(model, x, y).mean()
    assert adv > result.clean.loss.mean() + 0.5


def test_mode_and_requires_grad_flags_are_restored_even_after_an_error(digits_mlp):
    model, x, y = digits_mlp
    model.train()
    frozen = next(model.parameters())
    frozen.requires_grad_(False)
    try:
        pgd(model, untargeted_classification(x, y), [""], PGDSettings(steps=2), where="input")
        assert model.training and not frozen.requires_grad
        assert all(p.requires_grad for p in list(model.parameters())[1:])

        calls = {"n": 0}

        def failing(m):
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("boom")
            return untargeted_classification(x, y)(m)

        with pytest.raises(RuntimeError, match="boom"):
            pgd(model, failing, [""], PGDSettings(steps=3), where="input")
        assert model.training and not frozen.requires_grad and count_hooks(model) == 0
        assert all(p.requires_grad for p in list(model.parameters())[1:])
    finally:
        frozen.requires_grad_(True)
        model.eval()


@pytest.mark.parametrize("per", ["example", "token"])
def test_lm_attack_keeps_padding_at_zero_and_raises_the_loss(per):
    model = _tiny_gpt2()
    torch.manual_seed(3)
    ids = torch.randint(0, 50, (3, 7))
    attention = torch.ones(3, 7, dtype=torch.long)
    attention[0, 5:] = 0
    attention[1, 3:] = 0
    labels = ids.masked_fill(attention == 0, -100)
    batch = {"input_ids": ids, "attention_mask": attention, "labels": labels}
    settings = PGDSettings(norm="l2", eps=2.0, steps=6, per=per)
    for layer in ["transformer.wte", "transformer.h.0"]:  # embedding space (AT) and a latent (LAT)
        result = pgd(model, untargeted_lm(batch), [layer], settings, mask=attention)
        delta = result.deltas[layer]
        assert delta.shape == (3, 7, 16)
        assert torch.all(delta[attention == 0] == 0)
        assert torch.all(result.norms[layer] <= 2.0 * (1 + 1e-5))
        from redlat.adversarial.hooks import perturbed

        with torch.no_grad(), perturbed(model, result.deltas, mask=attention):
            adv = untargeted_lm(batch)(model).loss
        assert adv.mean() > result.clean.loss.mean()


def test_bad_settings_are_clear():
    with pytest.raises(ConfigError, match="norm must be one of"):
        PGDSettings(norm="l3")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="bounds"):
        PGDSettings(bounds=(1.0, 0.0))
    with pytest.raises(ConfigError, match="per-token"):
        project(torch.zeros(2, 3), "l2", 1.0, "token")


def _tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=50, max_position_embeddings=32)
    return LlamaForCausalLM(config).eval()


def _tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                        vocab_size=50, max_position_embeddings=32, num_labels=2)
    return BertForSequenceClassification(config).eval()


def test_llama_family_decoder_layer_attack():
    model = _tiny_llama()  # SmolLM2's architecture, tiny and random
    ids = torch.randint(0, 50, (2, 6))
    attention = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    batch = {"input_ids": ids, "attention_mask": attention, "labels": ids.masked_fill(attention == 0, -100)}
    result = pgd(model, untargeted_lm(batch), ["model.layers.0", "model.embed_tokens"],
                 PGDSettings(norm="l2", eps=1.0, steps=4), mask=attention)
    assert all(d.shape == (2, 6, model.config.hidden_size) for d in result.deltas.values())
    assert all(torch.all(d[attention == 0] == 0) for d in result.deltas.values())
    from redlat.adversarial.hooks import perturbed

    with torch.no_grad(), perturbed(model, result.deltas, mask=attention):
        assert untargeted_lm(batch)(model).loss.mean() > result.clean.loss.mean()


def test_bert_encoder_layer_attack_on_a_classifier():
    model = _tiny_bert()
    ids = torch.randint(0, 50, (8, 5))
    attention = torch.ones(8, 5, dtype=torch.long)
    attention[:4, 3:] = 0
    labels = torch.randint(0, 2, (8,))

    def objective(m):
        logits = m(input_ids=ids, attention_mask=attention).logits
        loss = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        from redlat.adversarial.pgd import Outcome

        return Outcome(loss, logits.argmax(-1) != labels)

    result = pgd(model, objective, ["bert.encoder.layer.0"], PGDSettings(norm="linf", eps=0.5, steps=5,
                 keep_best=True), mask=attention)
    delta = result.deltas["bert.encoder.layer.0"]
    assert torch.all(delta[attention == 0] == 0) and float(delta.abs().max()) <= 0.5 + 1e-6
    assert torch.all(result.adversarial.loss >= result.clean.loss)
    assert result.adversarial.loss.mean() > result.clean.loss.mean()


def test_each_layer_keeps_its_own_eps_and_token_norms_skip_masked_tokens():
    from redlat.adversarial.pgd import typical_norm

    model = _tiny_gpt2()
    ids = torch.randint(0, 50, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[:, 5:] = 0
    settings = PGDSettings(norm="l2", eps=0.5, steps=3, per="token", layer_eps=(("transformer.h.1", 4.0),))
    assert settings.for_layer("transformer.h.1").eps == 4.0 and settings.for_layer("transformer.wte").eps == 0.5
    assert settings.for_layer("transformer.h.1").alpha == pytest.approx(2.5 * 4.0 / 3)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    result = pgd(model, untargeted_lm(batch), ["transformer.wte", "transformer.h.1"],
                 settings, mask=mask)
    wte, h1 = result.norms["transformer.wte"], result.norms["transformer.h.1"]
    assert wte.max() <= 0.5 + 1e-4 and h1.max() <= 4.0 + 1e-4
    assert h1[:, :5].min() > 1.0  # the larger ball is used, not the smaller default
    assert (wte[:, 5:] == 0).all() and (h1[:, 5:] == 0).all()

    def forward(m: nn.Module) -> object:
        return m(input_ids=ids)

    every = typical_norm(model, "transformer.h.0", forward, "l2", per="token")
    with torch.no_grad():  # hidden_states[1]: block 0's output (the last entry has the final layer norm applied)
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states[1]
    kept = typical_norm(model, "transformer.h.0", forward, "l2", per="token", mask=mask)
    assert every == pytest.approx(float(hidden.norm(dim=-1).flatten().median()), rel=1e-5)
    assert kept == pytest.approx(float(hidden[:, :5].norm(dim=-1).flatten().median()), rel=1e-5)
    with pytest.raises(ConfigError, match="negative"):
        PGDSettings(layer_eps=(("x", -1.0),))


def test_keep_best_prefers_a_success_to_a_higher_loss():
    """A perturbation that fools the model at a loss below the clean loss beats one that fails at a higher loss: the
    old rule kept the failure and overstated robust accuracy."""
    from redlat.adversarial.pgd import Outcome, _Best

    start = {"": torch.zeros(3, 2)}
    clean = Outcome(loss=torch.tensor([1.0, 1.0, 1.0]), fooled=torch.tensor([False, False, True]))
    best = _Best(start, clean)
    fails_high = {"": torch.full((3, 2), 1.0)}
    best.offer(fails_high, Outcome(loss=torch.tensor([3.0, 3.0, 3.0]), fooled=torch.tensor([False, False, False])))
    wins_low = {"": torch.full((3, 2), 2.0)}
    best.offer(wins_low, Outcome(loss=torch.tensor([0.5, 4.0, 0.2]), fooled=torch.tensor([True, False, True])))
    assert best.outcome.fooled.tolist() == [True, False, True]
    assert best.outcome.loss.tolist() == [0.5, 4.0, 1.0]  # example 3 was fooled already: the higher loss of two wins
    assert best.deltas[""][:, 0].tolist() == [2.0, 2.0, 0.0]  # and a failure never replaces the clean win of ex. 3
