"""Projected gradient descent, once, for inputs, token embeddings and latents.

The attacker owns one perturbation per named module (`hooks.perturbed` adds it to the module's output, or to its
input); an input-space attack on an image model is the root module (name "") perturbed at its input. Each step takes
the gradient of the objective with respect to the perturbations only (`torch.autograd.grad`; weights are frozen for
the attack), moves along the steepest direction of the chosen norm, projects back into the ball, keeps pixels inside
their bounds and padding at zero.

Balls: L-inf (sign step, clamp), L2 (normalised step, rescale), L1 (a sparse sign step on the largest gradient
coordinates, then the exact Euclidean projection onto the L1 ball of Duchi et al. 2008). The norm is taken per example
(over everything but the batch dimension) or per token (over the last dimension).

Two options follow the published LAT code of Casper et al. 2024: `scaling="spread"` puts the ball in units of each
hidden dimension's spread (the attacker's delta is multiplied, per dimension, by that dimension's standard deviation
over the batch's unmasked positions divided by the mean of those deviations, plus a tenth of the mean absolute
activation; their code takes the deviation per position and dimension over the batch, which padded sequences of
different lengths make ragged, so here it is per dimension), and `clip="observed"` keeps every perturbed activation
inside the range [min, max] the clean activations span.

The objective is a callable `objective(model) -> Outcome` that runs the forward pass and returns a per-example loss
to *maximise* (and, optionally, which examples the attack has already won). `objectives.py` builds the usual ones:
untargeted (raise the loss on the true output) and targeted (lower it on a target, optionally raise it on an output
to avoid).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import nn

from redlat.adversarial.hooks import Where, captured, perturbed
from redlat.errors import ConfigError

Norm = Literal["linf", "l2", "l1"]
Per = Literal["example", "token"]
Scaling = Literal["none", "spread"]
Clip = Literal["none", "observed"]
NORMS: tuple[str, ...] = ("linf", "l2", "l1")


@dataclass(frozen=True)
class PGDSettings:
    """One attack: the ball (norm, eps, per example or per token) and the walk inside it."""

    norm: Norm = "l2"
    eps: float = 1.0
    steps: int = 10
    step_size: float | None = None  # None: 2.5 * eps / steps (Madry et al.'s rule of thumb)
    per: Per = "example"
    random_start: bool = True
    keep_best: bool = False  # per example, return the best perturbation seen: success first, then loss
    eval_mode: bool = True  # attack with the model in eval mode (as the published LAT code does)
    bounds: tuple[float, float] | None = None  # keep the perturbed values within [lo, hi] (pixels)
    l1_quantile: float = 0.9  # L1 steps move the coordinates whose |gradient| is in the top (1 - this) share
    layer_eps: tuple[tuple[str, float], ...] = ()  # (module, eps) pairs that override eps for those modules
    scaling: Scaling = "none"  # "spread": the ball in units of each hidden dimension's spread (see the module)
    clip: Clip = "none"  # "observed": perturbed activations stay inside the clean activations' [min, max]

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ConfigError(f"norm must be one of {', '.join(NORMS)}, not {self.norm!r}")
        if self.per not in ("example", "token"):
            raise ConfigError(f"per must be 'example' or 'token', not {self.per!r}")
        if self.eps < 0 or self.steps < 0 or any(eps < 0 for _, eps in self.layer_eps):
            raise ConfigError("eps and steps must not be negative")
        if self.step_size is not None and self.step_size <= 0:
            raise ConfigError("step_size must be positive")
        if not 0.0 <= self.l1_quantile < 1.0:
            raise ConfigError("l1_quantile must be in [0, 1)")
        if self.bounds is not None and self.bounds[0] >= self.bounds[1]:
            raise ConfigError(f"bounds must be (low, high) with low < high, not {self.bounds}")
        if self.scaling not in ("none", "spread") or self.clip not in ("none", "observed"):
            raise ConfigError(f"scaling must be none or spread and clip none or observed, not {self.scaling!r}, "
                              f"{self.clip!r}")
        if self.clip == "observed" and self.bounds is not None:
            raise ConfigError("give bounds or clip='observed', not both")

    def for_layer(self, name: str) -> PGDSettings:
        """The settings of one module: its own eps (and the default step size that follows from it) if it has one."""
        eps = dict(self.layer_eps).get(name)
        return self if eps is None else replace(self, eps=eps, layer_eps=())

    @property
    def alpha(self) -> float:
        return self.step_size if self.step_size is not None else 2.5 * self.eps / max(self.steps, 1)


@dataclass
class Outcome:
    """What a forward pass gave the attacker: a per-example loss to maximise, and optionally which examples it won
    (misclassified, or classified as the target). `parts` holds per-example terms worth logging."""

    loss: torch.Tensor
    fooled: torch.Tensor | None = None
    parts: dict[str, torch.Tensor] = field(default_factory=dict)

    def detached(self) -> Outcome:
        return Outcome(
            self.loss.detach(),
            None if self.fooled is None else self.fooled.detach(),
            {k: v.detach() for k, v in self.parts.items()},
        )


Objective = Callable[[nn.Module], Outcome]


@dataclass
class PGDResult:
    deltas: dict[str, torch.Tensor]  # detached, shaped like each module's activation
    clean: Outcome  # the objective without perturbation
    adversarial: Outcome | None  # at the returned deltas (computed when keep_best; else None)
    norms: dict[str, torch.Tensor]  # per group (example or token) norm of each delta, in the ball's units


def pgd(
    model: nn.Module,
    objective: Objective,
    layers: Sequence[str],
    settings: PGDSettings,
    *,
    where: Where = "output",
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> PGDResult:
    """Attack `model` by perturbing the named modules' outputs (or inputs) within the ball of `settings`.

    `mask` (batch x tokens, 1 = may be perturbed) keeps padding (or non-prompt tokens) at zero. The model's train/eval
    mode and every parameter's `requires_grad` are restored on the way out, whatever happens."""
    if not layers:
        raise ConfigError("pgd needs at least one module to perturb")
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        if settings.eval_mode:
            model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.no_grad(), captured(model, layers, where=where) as acts:
            clean = objective(model).detached()
        missing = [name for name in layers if name not in acts]
        if missing:
            raise ConfigError(f"the forward pass never reached {', '.join(map(repr, missing))}")
        frames = {name: _Frame.of(acts[name], settings.for_layer(name), mask) for name in layers}
        deltas = {name: _start(frame, mask, generator) for name, frame in frames.items()}
        best = _Best(deltas, clean) if settings.keep_best else None

        def applied(ds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {name: frames[name].applied(d) for name, d in ds.items()}

        for _ in range(settings.steps):
            for d in deltas.values():
                d.requires_grad_(True)
            with torch.enable_grad(), perturbed(model, applied(deltas), mask=mask, where=where):
                out = objective(model)
                grads = torch.autograd.grad(out.loss.sum(), list(deltas.values()), allow_unused=True)
            if best is not None:
                best.offer(deltas, out.detached())
            with torch.no_grad():
                deltas = {
                    name: _constrain(d.detach() + _ascent(g, frames[name].settings, d), frames[name], mask)
                    for (name, d), g in zip(deltas.items(), grads, strict=True)
                }
        adversarial = None
        if best is not None:
            with torch.no_grad(), perturbed(model, applied(deltas), mask=mask, where=where):
                best.offer(deltas, objective(model).detached())
            deltas, adversarial = best.deltas, best.outcome
        norms = {name: group_norms(d.detach(), settings.norm, settings.per) for name, d in deltas.items()}
        deltas = {name: d.detach() for name, d in applied(deltas).items()}
        return PGDResult(deltas=deltas, clean=clean, adversarial=adversarial, norms=norms)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


class _Best:
    """Per example, the best perturbation seen: one that wins (fools) over one that does not, whatever their losses;
    between two that both win or both fail, the higher loss.

    It starts from no perturbation at all, so the returned attack never turns a wrong answer right, and never lowers an
    example's loss below its clean loss unless it fools the model there (a success counts more than a loss: preferring
    the loss could hand back a failed attack where a successful one was found, and overstate robust accuracy)."""

    def __init__(self, deltas: dict[str, torch.Tensor], clean: Outcome) -> None:
        self.deltas = {name: torch.zeros_like(d) for name, d in deltas.items()}
        self.outcome = Outcome(clean.loss.clone(), None if clean.fooled is None else clean.fooled.clone())

    def offer(self, deltas: dict[str, torch.Tensor], out: Outcome) -> None:
        higher = out.loss > self.outcome.loss
        if out.fooled is not None and self.outcome.fooled is not None:
            gains = out.fooled & ~self.outcome.fooled
            take = gains | ((out.fooled == self.outcome.fooled) & higher)
            self.outcome.fooled = torch.where(take, out.fooled, self.outcome.fooled)
        else:
            take = higher
        self.outcome.loss = torch.where(take, out.loss, self.outcome.loss)
        for name, d in deltas.items():
            rows = take.view(-1, *([1] * (d.dim() - 1)))
            self.deltas[name] = torch.where(rows, d.detach(), self.deltas[name])


def _groups(d: torch.Tensor, per: Per) -> torch.Tensor:
    """A 2-D view: one row per example (everything but the batch dimension) or per token (the last dimension)."""
    if per == "token":
        if d.dim() < 3:
            raise ConfigError(f"per-token norms need (batch, tokens, hidden) activations, not shape {tuple(d.shape)}")
        return d.reshape(-1, d.shape[-1])
    return d.reshape(d.shape[0], -1)


def group_norms(d: torch.Tensor, norm: Norm, per: Per = "example") -> torch.Tensor:
    """The norm of each example's (or token's) perturbation: shape (batch,) or (batch, tokens)."""
    rows = _groups(d, per)
    if norm == "linf":
        values = rows.abs().amax(dim=1)
    elif norm == "l2":
        values = rows.norm(p=2, dim=1)
    else:
        values = rows.abs().sum(dim=1)
    return values.reshape(d.shape[: d.dim() - 1] if per == "token" else d.shape[:1])


def _ascent(g: torch.Tensor | None, s: PGDSettings, like: torch.Tensor) -> torch.Tensor:
    """A step of length alpha (in the ball's norm) along the steepest ascent direction for that norm."""
    if g is None:  # the perturbed module does not affect the objective
        return torch.zeros_like(like)
    if s.norm == "linf":
        return s.alpha * g.sign()
    rows = _groups(g, s.per)
    if s.norm == "l2":
        step = rows / rows.norm(p=2, dim=1, keepdim=True).clamp_min(1e-12)
    else:
        magnitude = rows.abs()
        # the k-th largest |gradient| per row (topk, unlike torch.quantile, has no input-size limit)
        k = max(1, math.ceil((1 - s.l1_quantile) * rows.shape[1]))
        cutoff = magnitude.topk(k, dim=1).values[:, -1:]
        chosen = (magnitude >= cutoff) & (magnitude > 0)
        step = rows.sign() * chosen
        step = step / step.abs().sum(dim=1, keepdim=True).clamp_min(1.0)
    return s.alpha * step.reshape(g.shape)


def project(d: torch.Tensor, norm: Norm, eps: float, per: Per = "example") -> torch.Tensor:
    """The nearest point (Euclidean) of each example's or token's ball of radius eps."""
    if norm == "linf":
        return d.clamp(-eps, eps)
    rows = _groups(d, per)
    if norm == "l2":
        scale = (eps / rows.norm(p=2, dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
        return (rows * scale).reshape(d.shape)
    return _project_l1(rows, eps).reshape(d.shape)


def _project_l1(rows: torch.Tensor, eps: float) -> torch.Tensor:
    """Duchi et al. (2008): soft-threshold |v| by the theta that puts the L1 norm at eps (rows already inside stay)."""
    magnitude = rows.abs()
    inside = magnitude.sum(dim=1, keepdim=True) <= eps
    if eps == 0:
        return torch.zeros_like(rows)
    ordered, _ = magnitude.sort(dim=1, descending=True)
    cumulative = ordered.cumsum(dim=1)
    ranks = torch.arange(1, rows.shape[1] + 1, device=rows.device, dtype=rows.dtype)
    positive = ordered - (cumulative - eps) / ranks > 0
    rho = positive.to(rows.dtype).mul(ranks).amax(dim=1, keepdim=True).clamp_min(1)
    theta = (cumulative.gather(1, rho.long() - 1) - eps) / rho
    shrunk = rows.sign() * (magnitude - theta).clamp_min(0)
    return torch.where(inside, rows, shrunk)


@dataclass(frozen=True)
class _Frame:
    """One perturbed module: its clean activation, its settings, the per-dimension scale that maps the ball's units to
    the activation's (None: the same units) and the bounds perturbed values must stay within (None: unbounded)."""

    value: torch.Tensor
    settings: PGDSettings
    scale: torch.Tensor | None
    bounds: tuple[float, float] | None

    @classmethod
    def of(cls, value: torch.Tensor, s: PGDSettings, mask: torch.Tensor | None) -> _Frame:
        rows = _unmasked_rows(value, mask) if s.scaling == "spread" or s.clip == "observed" else None
        scale = None
        if s.scaling == "spread" and rows is not None:
            std = rows.float().std(dim=0)
            scale = (std / std.mean().clamp_min(1e-12) + rows.float().abs().mean() / 10).to(value.dtype)
        bounds = s.bounds
        if s.clip == "observed" and rows is not None:
            bounds = (float(rows.min()), float(rows.max()))
        return cls(value, s, scale, bounds)

    def applied(self, d: torch.Tensor) -> torch.Tensor:
        """What is added to the activation for a delta in the ball's units."""
        return d if self.scale is None else d * self.scale


def _unmasked_rows(value: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The activation's vectors (last dimension) at the positions that may be perturbed: (positions, hidden)."""
    if mask is not None and value.dim() >= 3 and tuple(mask.shape) == tuple(value.shape[:2]):
        return value[mask.to(value.device).bool()].reshape(-1, value.shape[-1])
    return value.reshape(-1, value.shape[-1])


def _masked(d: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return d
    m = mask.to(dtype=d.dtype, device=d.device)
    while m.dim() < d.dim():
        m = m.unsqueeze(-1)
    return d * m


def _constrain(d: torch.Tensor, frame: _Frame, mask: torch.Tensor | None) -> torch.Tensor:
    """Masked positions to zero, into the ball, then inside the value bounds (which can only shrink the norm)."""
    s = frame.settings
    d = project(_masked(d, mask), s.norm, s.eps, s.per)
    if frame.bounds is not None:
        lo, hi = frame.bounds
        moved = (frame.value + frame.applied(d)).clamp(lo, hi) - frame.value
        d = _masked(moved if frame.scale is None else moved / frame.scale, mask)
    return d


def _start(frame: _Frame, mask: torch.Tensor | None, gen: torch.Generator | None) -> torch.Tensor:
    """Zero, or a random point of the ball (uniform in L-inf; a random direction at a uniform radius in L2 and L1)."""
    value, s = frame.value, frame.settings
    if not s.random_start or s.eps == 0:
        return torch.zeros_like(value)
    noise = torch.empty_like(value)
    if s.norm == "linf":
        noise.uniform_(-s.eps, s.eps, generator=gen)
        return _constrain(noise, frame, mask)
    if s.norm == "l2":
        noise.normal_(generator=gen)
    else:
        noise.exponential_(generator=gen)
        signs = torch.empty_like(value).bernoulli_(0.5, generator=gen) * 2 - 1
        noise = noise * signs  # Laplace
    rows = _groups(noise, s.per)
    length = group_norms(noise, s.norm, s.per).reshape(-1, 1).clamp_min(1e-12)
    radius = torch.rand(rows.shape[0], 1, generator=gen, device=value.device, dtype=value.dtype) * s.eps
    return _constrain((rows / length * radius).reshape(value.shape), frame, mask)


def typical_norm(
    model: nn.Module,
    layer: str,
    run: Callable[[nn.Module], object],
    norm: Norm = "l2",
    *,
    per: Per = "example",
    mask: torch.Tensor | None = None,
) -> float:
    """The median per-example (or per-token) norm of a module's output on one forward pass: a scale for latent eps.
    With `per="token"`, `mask` (batch x tokens, 1 = counted) leaves padding and other tokens out of the median."""
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), captured(model, [layer]) as acts:
            run(model)
        values = group_norms(acts[layer], norm, per)
        if per == "token" and mask is not None:
            values = values[mask.to(values.device).bool()]
        return float(values.float().median())
    finally:
        model.train(was_training)
