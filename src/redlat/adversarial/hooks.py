"""Add a perturbation to the output (or input) of any named submodule, inside a context manager only.

Works on any `nn.Module`: Hugging Face causal LMs (token embeddings, decoder layers), BERT-like encoders, CNN blocks.
Hooks are registered on entry and removed in `finally`, so none survives an exception. A module whose output is a
tuple (older transformers decoder layers return `(hidden_states, ...)`) has its first element perturbed. A mask
(batch x tokens, 1 = perturb) limits the perturbation to real tokens, or to prompt tokens only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
from torch import nn

from redlat.errors import ConfigError

Where = Literal["output", "input"]


def find_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called `name` (as in `model.named_modules()`), or a ConfigError that suggests near names."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        tail = name.rsplit(".", 1)[-1]
        near = [n for n in names if n.endswith(tail) or tail in n][:8] or names[:8]
        raise ConfigError(f"{type(model).__name__} has no submodule {name!r}; for example: {', '.join(near)}") from None


def _apply(value: torch.Tensor, delta: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    try:
        fits = torch.broadcast_shapes(delta.shape, value.shape) == value.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(f"perturbation of shape {tuple(delta.shape)} does not fit activations {tuple(value.shape)}")
    delta = delta.to(dtype=value.dtype, device=value.device)
    if mask is not None:
        # mask: (batch, tokens) for sequence activations (batch, tokens, hidden); broadcast over the rest.
        m = mask.to(dtype=value.dtype, device=value.device)
        while m.dim() < value.dim():
            m = m.unsqueeze(-1)
        delta = delta * m
    return value + delta


@contextmanager
def perturbed(
    model: nn.Module,
    deltas: dict[str, torch.Tensor],
    *,
    mask: torch.Tensor | None = None,
    where: Where = "output",
) -> Iterator[nn.Module]:
    """Within the block, each named module's output (or first input) has its delta added.

    `deltas` maps module names to tensors shaped like the activation (or broadcastable from its trailing
    dimensions). Gradients flow to the deltas, which is what PGD needs."""
    handles: list[Any] = []
    try:
        for name, delta in deltas.items():
            module = find_module(model, name)
            if where == "output":
                handles.append(module.register_forward_hook(_output_hook(delta, mask)))
            elif where == "input":
                handles.append(module.register_forward_pre_hook(_input_hook(delta, mask)))
            else:
                raise ConfigError(f"where must be 'output' or 'input', not {where!r}")
        yield model
    finally:
        for handle in handles:
            handle.remove()


def _output_hook(delta: torch.Tensor, mask: torch.Tensor | None) -> Any:
    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        if isinstance(output, torch.Tensor):
            return _apply(output, delta, mask)
        if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
            return (_apply(output[0], delta, mask), *output[1:])
        raise TypeError(f"cannot perturb an output of type {type(output).__name__}")

    return hook


def _input_hook(delta: torch.Tensor, mask: torch.Tensor | None) -> Any:
    def hook(_module: nn.Module, inputs: tuple[Any, ...]) -> Any:
        if not inputs or not isinstance(inputs[0], torch.Tensor):
            raise TypeError("cannot perturb a module whose first input is not a tensor")
        return (_apply(inputs[0], delta, mask), *inputs[1:])

    return hook


@contextmanager
def captured(model: nn.Module, names: Sequence[str], *, where: Where = "output") -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, the dict fills with each named module's latest output (or first input), detached.

    PGD uses it on its clean forward pass to learn the activations' shapes (and values, for pixel bounds)."""
    seen: dict[str, torch.Tensor] = {}
    handles: list[Any] = []

    def keep(name: str, value: Any) -> None:
        if isinstance(value, tuple) and value:
            value = value[0]
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"module {name!r} has a {where} of type {type(value).__name__}, not a tensor")
        seen[name] = value.detach()

    try:
        for name in names:
            module = find_module(model, name)
            if where == "output":
                handles.append(module.register_forward_hook(lambda _m, _i, out, name=name: keep(name, out)))
            else:
                handles.append(module.register_forward_pre_hook(lambda _m, inp, name=name: keep(name, inp)))
        yield seen
    finally:
        for handle in handles:
            handle.remove()


def count_hooks(model: nn.Module) -> int:
    """Forward and pre-forward hooks registered anywhere in the model (0 outside a `perturbed` block)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def token_mask(attention_mask: torch.Tensor, prompt_lengths: Sequence[int] | None = None) -> torch.Tensor:
    """1 on real tokens (from the attention mask), and, given each row's prompt length, only on prompt tokens.

    Prompt lengths count real tokens from the first real token, so left and right padding both work."""
    mask = attention_mask.clone().to(torch.float32)
    if prompt_lengths is not None:
        position = attention_mask.long().cumsum(dim=1)  # 1-based index among real tokens
        limits = torch.tensor(list(prompt_lengths), device=attention_mask.device).unsqueeze(1)
        mask = mask * (position <= limits).to(mask.dtype)
    return mask
