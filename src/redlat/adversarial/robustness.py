"""Robust accuracy under attacks, including families no defence trains on.

An attack is named by a short spec string so that it reads well in tables and configs:

    pgd-linf:0.1   pgd-l2:1.0   pgd-l1:2.0    PGD in that ball (keep-best, so never easier than clean)
    noise:0.1                                  Gaussian noise of that standard deviation (one seeded draw)
    rotate:15                                  worst case over rotations in [-15, 15] degrees (5 angles)
    translate:0.5                              worst case over shifts of 0.5 pixel in the 8 directions
    blur:1.0                                   Gaussian blur of that sigma (pixels)

The last three are not Lp balls: a model robust only to Lp perturbations need not be robust to them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from redlat.adversarial.attack_specs import AttackSpec
from redlat.adversarial.objectives import untargeted_classification
from redlat.adversarial.pgd import PGDSettings, pgd
from redlat.adversarial.trojans import predict


def robust_accuracy(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    spec: AttackSpec,
    *,
    pgd_steps: int = 20,
    seed: int = 0,
    batch_size: int = 512,
) -> float:
    """Accuracy on the attacked images (worst case per image for the transformation families)."""
    right = []
    for start in range(0, len(images), batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        right.append(_correct(model, x, y, spec, pgd_steps, seed + start))
    return float(torch.cat(right).float().mean())


def _correct(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, spec: AttackSpec, steps: int, seed: int
) -> torch.Tensor:
    if spec.family.startswith("pgd-"):
        settings = PGDSettings(
            norm=spec.family[4:],  # type: ignore[arg-type]
            eps=spec.size,
            steps=steps,
            keep_best=True,
            bounds=(0.0, 1.0),
        )
        gen = torch.Generator(device=x.device).manual_seed(seed)
        result = pgd(model, untargeted_classification(x, y), [""], settings, where="input", generator=gen)
        return predict(model, x + result.deltas[""]) == y
    if spec.family == "noise":
        gen = torch.Generator(device=x.device).manual_seed(seed)
        noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype) * spec.size
        return predict(model, (x + noise).clamp(0, 1)) == y
    if spec.family == "blur":
        return predict(model, gaussian_blur(x, spec.size)) == y
    variants = _rotations(x, spec.size) if spec.family == "rotate" else _translations(x, spec.size)
    correct = predict(model, x) == y  # the worst case includes the untransformed image
    for variant in variants:
        correct &= predict(model, variant) == y
    return correct


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(2 * sigma))
    grid = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(grid**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    out = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), horizontal, groups=channels)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), vertical, groups=channels)


def _affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _rotations(x: torch.Tensor, degrees: float) -> list[torch.Tensor]:
    out = []
    for angle in torch.linspace(-degrees, degrees, 5).tolist():
        if angle == 0:
            continue
        a = math.radians(angle)
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]], dtype=x.dtype)
        out.append(_affine(x, theta.to(x.device)))
    return out


def _translations(x: torch.Tensor, pixels: float) -> list[torch.Tensor]:
    """Shifts by `pixels` (sub-pixel allowed, bilinear) in the eight compass directions."""
    out: list[torch.Tensor] = []
    if pixels <= 0:
        return out
    height, width = x.shape[-2:]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx or dy:
                # affine_grid works in [-1, 1] coordinates: one pixel is 2 / side.
                shift = [-2 * dx * pixels / width, -2 * dy * pixels / height]
                theta = torch.tensor([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]], dtype=x.dtype, device=x.device)
                out.append(_affine(x, theta))
    return out
