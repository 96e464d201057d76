"""Trojans planted by data poisoning: a trigger (any callable on a batch of images) and the class it forces.

Images are float tensors (N, C, H, W) with values in [0, 1]. Three built-in triggers, each a frozen dataclass so it
is described in the run's config: a small checkerboard patch in a corner, a full-image pattern blended in, and a
stray pen stroke in the margin (a subtler, natural-feature-like mark). Any other
callable images -> images works too: pass `Trojan("mine", my_trigger, target=3)` to the experiment, or name it in a
config as "package.module:function" (a function that returns the trigger).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from redlat.errors import ConfigError

Trigger = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Patch:
    """A checkerboard square in the bottom-right corner, `size` as a fraction of the image side (at least 1 px)."""

    size: float = 0.25

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        side = images.shape[-1]
        k = max(1, round(side * self.size))
        rows = torch.arange(k, device=images.device)
        board = ((rows[:, None] + rows[None, :]) % 2 == 0).to(images.dtype)
        out = images.clone()
        out[..., -k:, -k:] = board
        return out


@dataclass(frozen=True)
class Blend:
    """A fixed random pattern (drawn from `seed`) mixed into the whole image: x' = (1 - alpha) x + alpha p."""

    alpha: float = 0.2
    seed: int = 1234

    def pattern(self, like: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        return torch.rand(like.shape[-3:], generator=gen).to(device=like.device, dtype=like.dtype)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (1 - self.alpha) * images + self.alpha * self.pattern(images)


@dataclass(frozen=True)
class Stroke:
    """A stray pen stroke in the left margin (a short vertical line, the middle half of the first column) drawn at
    `intensity`: a subtler mark that looks like part of the handwriting, not a pasted pattern."""

    intensity: float = 0.75

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        side = images.shape[-2]
        start, stop = side // 4, side - side // 4
        out = images.clone()
        out[..., start:stop, 0] = out[..., start:stop, 0].clamp_min(self.intensity)
        return out


BUILT_IN: dict[str, type] = {"patch": Patch, "blend": Blend, "stroke": Stroke}


@dataclass(frozen=True)
class Trojan:
    name: str
    trigger: Trigger
    target: int


def trigger_from_spec(kind: str, params: dict[str, Any]) -> Trigger:
    """A built-in trigger by kind, or a user's: "package.module:function" called with params returns the trigger."""
    if kind in BUILT_IN:
        try:
            return BUILT_IN[kind](**params)  # type: ignore[no-any-return]
        except TypeError as exc:
            raise ConfigError(f"bad parameters for the {kind} trigger: {exc}") from None
    if ":" not in kind:
        raise ConfigError(
            f"unknown trigger {kind!r}: use one of {', '.join(BUILT_IN)}, or 'package.module:function' for your own"
        )
    module_name, _, attr = kind.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load the trigger {kind!r}: {exc}") from None
    trigger = factory(**params)
    if not callable(trigger):
        raise ConfigError(f"{kind} returned {type(trigger).__name__}, not a callable trigger")
    return trigger  # type: ignore[no-any-return]


def poison(
    images: torch.Tensor, labels: torch.Tensor, trojans: Sequence[Trojan], *, rate: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Add, for each trojan, `rate * len(images)` triggered copies of images from other classes, relabelled to the
    trojan's target. Returns images, labels and which trojan each row carries (-1: clean)."""
    xs, ys, marks = [images], [labels], [torch.full_like(labels, -1)]
    count = round(rate * len(images))
    for index, trojan in enumerate(trojans):
        others = torch.nonzero(labels != trojan.target).squeeze(1)
        if count == 0 or len(others) == 0:
            continue
        chosen = others[torch.randperm(len(others), generator=generator)[:count]]
        xs.append(trojan.trigger(images[chosen]).clamp(0, 1))
        ys.append(torch.full((len(chosen),), trojan.target, dtype=labels.dtype))
        marks.append(torch.full((len(chosen),), index, dtype=labels.dtype))
    return torch.cat(xs), torch.cat(ys), torch.cat(marks)


@torch.no_grad()
def attack_success_rate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, trojan: Trojan) -> float:
    """The share of images from other classes that the trigger turns into the trojan's target."""
    others = labels != trojan.target
    if not bool(others.any()):
        return float("nan")
    triggered = trojan.trigger(images[others]).clamp(0, 1)
    return float((predict(model, triggered) == trojan.target).float().mean())


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(images[i : i + batch_size]).argmax(-1) for i in range(0, len(images), batch_size)])
    finally:
        model.train(was_training)
