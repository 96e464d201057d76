"""The trainer: every kind of defence trains and logs, AT buys robustness, resume gives the same weights, LoRA."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from redlat.adversarial.hooks import count_hooks
from redlat.adversarial.objectives import untargeted_classification
from redlat.adversarial.pgd import PGDSettings, pgd
from redlat.adversarial.tasks import ClassificationTask, LanguageModelTask
from redlat.adversarial.trainers import AdversarialTrainer, Defence, TrainSettings, apply_lora
from redlat.config import LoraSettings
from redlat.errors import ConfigError

LINF = PGDSettings(norm="linf", eps=0.1, steps=5, bounds=(0.0, 1.0))


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1), torch.tensor(data.target)


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def _batches(x, y, size=64, limit=None):
    out = [{"x": x[i : i + size], "y": y[i : i + size]} for i in range(0, len(x), size)]
    return out[:limit] if limit else out


def _robust_accuracy(model, x, y):
    result = pgd(
        model,
        untargeted_classification(x, y),
        [""],
        PGDSettings(norm="linf", eps=0.1, steps=10, bounds=(0.0, 1.0), keep_best=True),
        where="input",
    )
    with torch.no_grad():
        return float((model(x + result.deltas[""]).argmax(-1) == y).float().mean())


@pytest.mark.parametrize(
    "defence",
    [
        Defence(),
        Defence(kind="at", layers=("",), where="input", attack=LINF),
        Defence(kind="lat", layers=("2",), attack=PGDSettings(norm="l2", eps=2.0, steps=3)),
        Defence(kind="lat", layers=("1", "3"), attack=PGDSettings(norm="l2", eps=1.0, steps=3)),
    ],
    ids=["none", "at", "lat", "lat-two-layers"],
)
def test_every_defence_trains_and_logs_each_step(digits, defence):
    x, y = digits
    model = _mlp()
    logs = AdversarialTrainer(model, ClassificationTask(), defence, TrainSettings(lr=3e-3)).fit(
        _batches(x[:1280], y[:1280]) * 3
    )
    assert [log.step for log in logs] == list(range(1, 61))
    assert sum(log.loss for log in logs[-10:]) < sum(log.loss for log in logs[:10])  # it learns
    assert count_hooks(model) == 0 and model.training
    if defence.kind == "none":
        assert all(log.adv_loss is None and not log.norms for log in logs)
    else:
        eps = defence.attack.eps
        assert all(set(log.norms) == set(defence.layers) for log in logs)
        assert all(0 < v <= eps * (1 + 1e-5) for log in logs for v in log.norms.values())
        assert sum(log.adv_loss > log.clean_loss for log in logs) > 0.9 * len(logs)  # the attack bites


def test_adversarial_training_buys_robustness_that_plain_training_lacks(digits):
    x, y = digits
    train, test_x, test_y = _batches(x[:1400], y[:1400]) * 4, x[1400:], y[1400:]
    plain, at = _mlp(), _mlp()
    AdversarialTrainer(plain, ClassificationTask(), Defence(), TrainSettings(lr=3e-3)).fit(train)
    AdversarialTrainer(at, ClassificationTask(), Defence("at", ("",), "input", LINF), TrainSettings(lr=3e-3)).fit(train)
    assert _robust_accuracy(at.eval(), test_x, test_y) > _robust_accuracy(plain.eval(), test_x, test_y) + 0.1


def test_a_killed_run_resumes_to_the_same_weights(digits, tmp_path):
    x, y = digits
    batches = _batches(x[:640], y[:640], size=32)
    defence = Defence("at", ("",), "input", PGDSettings(norm="l2", eps=1.0, steps=3, bounds=(0.0, 1.0)))
    settings = TrainSettings(lr=3e-3, seed=7, checkpoint_every=4)

    whole = _mlp()
    AdversarialTrainer(whole, ClassificationTask(), defence, settings).fit(batches)

    parted = _mlp()
    first = AdversarialTrainer(parted, ClassificationTask(), defence, settings, checkpoint_dir=tmp_path)
    first.fit(batches[:9])  # "killed" after step 9; the last checkpoint on disk is from step 9 (the end of fit)
    resumed_model = _mlp(seed=123)  # a fresh process: different initial weights, restored from the checkpoint
    second = AdversarialTrainer(resumed_model, ClassificationTask(), defence, settings, checkpoint_dir=tmp_path)
    logs = second.fit(batches)
    assert [log.step for log in logs] == list(range(10, len(batches) + 1))
    for a, b in zip(whole.parameters(), resumed_model.parameters(), strict=True):
        assert torch.equal(a, b)

    other = AdversarialTrainer(_mlp(), ClassificationTask(), Defence(), settings, checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="another defence"):
        other.fit(batches)


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=2, n_embd=16, n_head=2, vocab_size=50, n_positions=32, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
    )
    return GPT2LMHeadModel(config)


def _pair_batch():
    """prompt (4 tokens) + a safe or a harmful completion (3 tokens), the prompt at the same positions."""
    torch.manual_seed(5)
    prompt = torch.randint(0, 50, (4, 4))
    safe = torch.cat([prompt, torch.full((4, 3), 7)], dim=1)
    harmful = torch.cat([prompt, torch.full((4, 3), 9)], dim=1)
    ones = torch.ones(4, 7, dtype=torch.long)

    def labelled(ids):
        return {"input_ids": ids, "attention_mask": ones, "labels": ids.masked_fill(torch.arange(7) < 4, -100)}

    prompt_mask = (torch.arange(7) < 4).long().expand(4, 7)
    retain = torch.randint(0, 50, (4, 7))
    return {
        "safe": labelled(safe),
        "harmful": labelled(harmful),
        "prompt_mask": prompt_mask,
        "retain": {"input_ids": retain, "attention_mask": ones, "labels": retain},
    }


def test_targeted_lat_with_lora_trains_only_adapters_and_lowers_the_harmful_pull():
    model = apply_lora(_tiny_gpt2(), LoraSettings(enabled=True, r=4, alpha=8, target_modules=("c_attn", "c_fc")))
    base = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    batch = _pair_batch()
    defence = Defence(
        kind="targeted-lat",
        layers=("transformer.wte", "transformer.h.0"),  # names of the base model, as a user writes them
        attack=PGDSettings(norm="l2", eps=1.0, steps=4, per="token"),
    )
    logs = AdversarialTrainer(model, LanguageModelTask(), defence, TrainSettings(lr=1e-2)).fit([batch] * 30)
    assert {"away_loss", "retain_loss"} <= set(logs[0].extra)
    assert logs[-1].adv_loss < logs[0].adv_loss  # the safe completion is learnt under attack
    assert logs[-1].extra["away_loss"] < logs[0].extra["away_loss"]  # and the harmful one unlearnt
    assert all(torch.equal(p, base[n]) for n, p in model.named_parameters() if n in base)
    assert all(not torch.equal(p, adapters[n]) for n, p in model.named_parameters() if p.requires_grad)


def test_lm_latent_training_masks_padding_and_needs_prompt_mask_for_targeted():
    model = _tiny_gpt2()
    ids = torch.randint(0, 50, (2, 6))
    attention = torch.tensor([[1] * 6, [1] * 3 + [0] * 3])
    batch = {"input_ids": ids, "attention_mask": attention, "labels": ids.masked_fill(attention == 0, -100)}
    logs = AdversarialTrainer(
        model, LanguageModelTask(), Defence("lat", ("transformer.h.1",), attack=PGDSettings(eps=2.0, steps=2))
    ).fit([batch] * 3)
    assert len(logs) == 3 and all(log.adv_loss is not None for log in logs)
    with pytest.raises(ConfigError, match="prompt_mask"):
        AdversarialTrainer(model, LanguageModelTask(), Defence("targeted-lat", ("transformer.h.1",))).fit(
            [{"safe": batch, "harmful": batch}]
        )


def test_bad_defences_are_clear():
    with pytest.raises(ConfigError, match="needs the modules"):
        Defence(kind="lat")
    with pytest.raises(ConfigError, match="kind must be one of"):
        Defence(kind="magic")  # type: ignore[arg-type]
