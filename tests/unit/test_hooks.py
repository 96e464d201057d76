"""Perturbation hooks: they change exactly what they should, only inside the block, and never outlive it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from redlat.adversarial.hooks import count_hooks, find_module, perturbed, token_mask
from redlat.errors import ConfigError


def _tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50, n_positions=32)).eval()


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10)).eval()


def test_decoder_layer_perturbation_changes_logits_only_inside():
    model = _tiny_gpt2()
    ids = torch.randint(0, 50, (2, 5))
    clean = model(ids).logits
    delta = torch.randn(2, 5, 16, requires_grad=True)
    with perturbed(model, {"transformer.h.0": delta}):
        assert count_hooks(model) == 1
        attacked = model(ids).logits
    assert count_hooks(model) == 0
    assert not torch.allclose(clean, attacked)
    assert torch.allclose(model(ids).logits, clean)
    attacked.sum().backward()  # gradients reach the perturbation, as PGD needs
    assert delta.grad is not None and delta.grad.abs().sum() > 0


def test_masked_tokens_are_untouched():
    model = _tiny_gpt2()
    ids = torch.randint(0, 50, (1, 6))
    seen: list[torch.Tensor] = []
    recorder = model.transformer.h[1].register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
    try:
        model(ids)
        mask = torch.tensor([[1, 1, 1, 0, 0, 0]])
        with perturbed(model, {"transformer.h.0": torch.ones(1, 6, 16)}, mask=mask):
            model(ids)
    finally:
        recorder.remove()
    clean, hidden = seen  # what layer 1 received: layer 0's output, clean then perturbed
    change = (hidden - clean).abs().sum(-1)[0]
    assert torch.all(change[:3] > 0) and torch.all(change[3:] == 0)


def test_embedding_input_and_cnn_block():
    model = _tiny_gpt2()
    ids = torch.randint(0, 50, (1, 4))
    clean = model(ids).logits
    with perturbed(model, {"transformer.wte": torch.full((16,), 0.5)}):  # broadcast over batch and tokens
        assert not torch.allclose(model(ids).logits, clean)
    cnn = _cnn()
    x = torch.rand(3, 1, 8, 8)
    with perturbed(cnn, {"0": torch.zeros(4, 8, 8)}):
        assert torch.allclose(cnn(x), cnn(x))
    with perturbed(cnn, {"3": torch.ones(1, 256)}, where="input"):
        shifted = cnn(x)
    assert not torch.allclose(shifted, cnn(x))


def test_no_hook_survives_an_exception():
    model = _tiny_gpt2()
    with pytest.raises(RuntimeError, match="boom"), perturbed(model, {"transformer.h.1": torch.zeros(16)}):
        assert count_hooks(model) == 1
        raise RuntimeError("boom")
    assert count_hooks(model) == 0
    with pytest.raises(ValueError, match="does not fit"), perturbed(model, {"transformer.h.0": torch.zeros(7)}):
        model(torch.randint(0, 50, (1, 3)))
    assert count_hooks(model) == 0


def test_bad_module_name_and_token_mask():
    model = _tiny_gpt2()
    with pytest.raises(ConfigError, match=r"transformer\.h\.0"):
        find_module(model, "transformer.h.9")
    with pytest.raises(ConfigError), perturbed(model, {"transformer.h.0": torch.zeros(16), "nope": torch.zeros(1)}):
        pass
    assert count_hooks(model) == 0
    attention = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]])  # left- and right-padded rows
    assert token_mask(attention).tolist() == attention.float().tolist()
    prompt_only = token_mask(attention, prompt_lengths=[2, 3])
    assert prompt_only.tolist() == [[0, 0, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0]]
