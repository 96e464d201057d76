"""Where an attacker perturbs a causal LM, named the way the papers name it, and the Defence that follows.

A layer is an integer k, the residual stream entering decoder block k (Hugging Face's `hidden_states[k]`): 0 is the
token embeddings' output (AT), k >= 1 block k - 1's output (LAT; the published LAT code uses k = 4 of Llama-2-7b;
for the last k this is the last block's output before the final norm, which Hugging Face's last entry includes).
A string is any module name. Relative eps: a fraction of each layer's median per-token L2 norm on prompt tokens,
because the residual stream grows by orders of magnitude from the embeddings to the middle layers.

Two published recipes for the untargeted attack (RECIPES):
- `sheshadri2024` (targeted LAT's setup, Sheshadri et al. 2024): an L2 ball per prompt token, the loss on the
  completion, step 2.5 eps / steps, eps relative to the layer's median token norm by default;
- `casper2024` (the published code of Casper et al. 2024): one L2 ball per sequence over every real token, in units
  of each hidden dimension's spread (pgd's scaling="spread"), the loss on the whole dialogue (the defender's too),
  step eps / steps, perturbed activations clipped to the clean ones' observed range; eps absolute, in those units
  (their code uses 8 at layer 4 of Llama-2-7b).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from redlat.adversarial.hooks import find_module
from redlat.adversarial.pgd import PGDSettings, typical_norm
from redlat.adversarial.tasks import LanguageModelTask, to_device
from redlat.adversarial.trainers import Defence, hook_root
from redlat.errors import ConfigError

Recipe = Literal["sheshadri2024", "casper2024"]
RECIPES: tuple[str, ...] = ("sheshadri2024", "casper2024")


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


def lm_task(recipe: Recipe = "sheshadri2024") -> LanguageModelTask:
    """What the recipe scores: the completion (sheshadri2024) or the whole dialogue (casper2024)."""
    _check_recipe(recipe)
    return LanguageModelTask(loss_on="dialogue" if recipe == "casper2024" else "completion")


def _check_recipe(recipe: str) -> None:
    if recipe not in RECIPES:
        raise ConfigError(f"unknown LAT recipe {recipe!r}; the recipes are: {', '.join(RECIPES)}")


def lm_defence(
    kind: str,
    layers: Sequence[int | str],
    eps: float,
    model: nn.Module,
    sample: Mapping[str, Any],
    *,
    recipe: Recipe = "sheshadri2024",
    relative_eps: bool = True,
    steps: int = 3,
    away_weight: float = 1.0,
    retain_weight: float = 1.0,
) -> Defence:
    """The trainer's Defence: kind none | at | lat | targeted-lat, PGD at `layers` as the recipe says (see the module;
    train with lm_task(recipe)). For sheshadri2024 a relative eps becomes absolute per layer on the sample batch
    (input_ids, attention_mask, prompt_mask); casper2024's eps is absolute, in units of the activations' spread."""
    _check_recipe(recipe)
    if kind == "none":
        return Defence()
    modules = layer_modules(model, layers)
    if recipe == "casper2024":
        if kind == "targeted-lat":
            raise ConfigError("the casper2024 recipe is untargeted (at, lat); targeted LAT follows sheshadri2024")
        attack = PGDSettings(norm="l2", eps=eps, steps=steps, step_size=eps / max(steps, 1), per="example",
                             scaling="spread", clip="observed")
        return Defence(kind, modules, "output", attack)  # type: ignore[arg-type]
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


def eps_by_layer(labels: Sequence[int | str], defence: Defence) -> dict[str, float]:
    """The absolute eps the attacker had at each layer (relative eps differ per layer), keyed by the layer as the
    spec names it (`labels`, in the order of defence.layers); empty for no defence."""
    if defence.kind == "none":
        return {}
    own = dict(defence.attack.layer_eps)
    return {str(label): float(own.get(module, defence.attack.eps))
            for label, module in zip(labels, defence.layers, strict=True)}


def sample_batch(batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The part of a training batch that relative eps is measured on (the safe side of a targeted-LAT batch)."""
    return dict(batch.get("safe", batch))
