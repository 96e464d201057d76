"""Where an attacker perturbs a causal LM, named the way the papers name it, and the Defence that follows.

A layer is an integer k, the residual stream entering decoder block k (Hugging Face's `hidden_states[k]`): 0 is the
token embeddings' output (AT), k >= 1 block k - 1's output (LAT; the published LAT code uses k = 4 of Llama-2-7b;
for the last k this is the last block's output before the final norm, which Hugging Face's last entry includes).
A string is any module name. Relative eps: a fraction of each layer's median per-token L2 norm on prompt tokens,
because the residual stream grows by orders of magnitude from the embeddings to the middle layers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from redlat.adversarial.hooks import find_module
from redlat.adversarial.pgd import PGDSettings, typical_norm
from redlat.adversarial.tasks import to_device
from redlat.adversarial.trainers import Defence, hook_root
from redlat.errors import ConfigError


def block_list(model: nn.Module) -> str:
    """The name of the decoder's list of blocks (the longest ModuleList: `model.layers`, `transformer.h`, ...)."""
    lists = [(len(m), name) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        raise ConfigError(f"{type(model).__name__} has no list of decoder blocks; name the modules to perturb")
    return max(lists)[1]


def layer_modules(model: nn.Module, layers: Sequence[int | str]) -> tuple[str, ...]:
    """Module names for layer specs (integers as above; a string is a module name, checked)."""
    root = hook_root(model)
    names = []
    for layer in layers:
        if isinstance(layer, str):
            find_module(root, layer)
            names.append(layer)
            continue
        if layer == 0:
            embeddings = root.get_input_embeddings()  # type: ignore[operator]
            names.append(next(n for n, m in root.named_modules() if m is embeddings))
            continue
        blocks = block_list(root)
        count = len(root.get_submodule(blocks))
        if layer > count:
            raise ConfigError(f"layer {layer} does not exist: {type(root).__name__} has {count} blocks (0-{count})")
        names.append(f"{blocks}.{layer - 1}")
    return tuple(names)


def lm_defence(
    kind: str,
    layers: Sequence[int | str],
    eps: float,
    model: nn.Module,
    sample: Mapping[str, Any],
    *,
    relative_eps: bool = True,
    steps: int = 3,
    away_weight: float = 1.0,
    retain_weight: float = 1.0,
) -> Defence:
    """The trainer's Defence: kind none | at | lat | targeted-lat, per-token L2 PGD at `layers` on prompt tokens.
    A relative eps becomes absolute per layer on the sample batch (input_ids, attention_mask, prompt_mask)."""
    if kind == "none":
        return Defence()
    modules = layer_modules(model, layers)
    layer_eps: tuple[tuple[str, float], ...] = ()
    if relative_eps:
        root = hook_root(model)
        batch = to_device(dict(sample), next(model.parameters()).device)

        def forward(m: nn.Module) -> object:
            return m(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])

        scales = {
            name: typical_norm(root, name, forward, "l2", per="token", mask=batch["prompt_mask"]) for name in modules
        }
        layer_eps = tuple((name, eps * scale) for name, scale in scales.items())
    attack = PGDSettings(
        norm="l2", eps=min(e for _, e in layer_eps) if layer_eps else eps, steps=steps, per="token",
        layer_eps=layer_eps,
    )
    return Defence(kind, modules, "output", attack, away_weight=away_weight, retain_weight=retain_weight)  # type: ignore[arg-type]


def sample_batch(batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The part of a training batch that relative eps is measured on (the safe side of a targeted-LAT batch)."""
    return dict(batch.get("safe", batch))
