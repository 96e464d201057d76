"""Triggers, poisoning, held-out attacks and the Pareto summary."""

from __future__ import annotations

import math

import pytest
import torch

from redlat.adversarial.attack_specs import AttackSpec
from redlat.adversarial.robustness import gaussian_blur, robust_accuracy
from redlat.adversarial.trojans import Blend, Patch, Stroke, Trojan, attack_success_rate, poison, trigger_from_spec
from redlat.errors import ConfigError
from redlat.experiments.pareto import interval, pareto_front


def _images(n: int = 6, side: int = 8) -> torch.Tensor:
    return torch.rand(n, 1, side, side, generator=torch.Generator().manual_seed(0)) * 0.3


def test_patch_changes_only_its_corner():
    x = _images()
    out = Patch(size=0.25)(x)
    changed = (out != x).any(dim=0)[0]
    assert changed[:-2, :].sum() == 0 and changed[:, :-2].sum() == 0  # only the 2x2 bottom-right corner
    assert set(out[0, 0, -2:, -2:].flatten().tolist()) == {0.0, 1.0}


def test_blend_is_the_same_pattern_for_every_image_and_keeps_range():
    x = _images()
    blend = Blend(alpha=0.2, seed=3)
    out = blend(x)
    assert torch.allclose(out - 0.8 * x, (out - 0.8 * x)[0].expand_as(out), atol=1e-6)
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(Blend(alpha=0.2, seed=4)(x), out)


def test_stroke_marks_the_left_margin_only():
    x = _images()
    out = Stroke(intensity=0.5)(x)
    assert torch.all(out[..., 2:6, 0] >= 0.5)
    assert torch.equal(out[..., 1:], x[..., 1:]) and torch.equal(out[..., :2, 0], x[..., :2, 0])


def test_poison_adds_relabelled_triggered_copies_from_other_classes():
    x = _images(100)
    y = torch.arange(100) % 10
    trojans = [Trojan("patch", Patch(), 0), Trojan("stroke", Stroke(), 7)]
    px, py, marks = poison(x, y, trojans, rate=0.1, generator=torch.Generator().manual_seed(0))
    assert len(px) == 120 and torch.equal(px[:100], x)
    assert torch.all(py[100:110] == 0) and torch.all(py[110:] == 7) and torch.all(marks[:100] == -1)
    assert torch.all(px[100:110, :, -2:, -2:].sum(dim=(1, 2, 3)) == 2)  # the checkerboard's two white pixels


def test_user_triggers_load_by_import_path_and_bad_ones_are_clear():
    trigger = trigger_from_spec("redlat.adversarial.trojans:Patch", {"size": 0.5})
    assert isinstance(trigger, Patch) and trigger.size == 0.5
    with pytest.raises(ConfigError, match="unknown trigger 'sticker'"):
        trigger_from_spec("sticker", {})
    with pytest.raises(ConfigError, match="cannot load"):
        trigger_from_spec("no_such_module:thing", {})
    with pytest.raises(ConfigError, match="bad parameters"):
        trigger_from_spec("patch", {"colour": "red"})


class _Lookup(torch.nn.Module):
    """Predicts class 1 when the bottom-right pixel is bright, else class 0: a trojan in its purest form."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bright = x[:, 0, -1, -1]
        return torch.stack([1 - bright, bright], dim=1)


def test_attack_success_rate_counts_other_classes_turned_to_the_target():
    x = _images(10)
    y = torch.tensor([0] * 6 + [1] * 4)
    assert attack_success_rate(_Lookup(), x, y, Trojan("patch", Patch(), 1)) == 1.0
    assert attack_success_rate(_Lookup(), x, y, Trojan("stroke", Stroke(), 1)) == 0.0


def test_attack_specs_parse_and_reject():
    assert AttackSpec.parse("pgd-l1:2").name == "pgd-l1:2"
    for bad in ["pgd-l3:1", "noise", "blur:x", "rotate:-1"]:
        with pytest.raises(ConfigError):
            AttackSpec.parse(bad)


def test_blur_keeps_a_flat_image_and_smooths_an_edge():
    flat = torch.full((1, 1, 8, 8), 0.4)
    assert torch.allclose(gaussian_blur(flat, 1.0), flat, atol=1e-6)
    edge = torch.zeros(1, 1, 8, 8)
    edge[..., 4:] = 1
    out = gaussian_blur(edge, 1.0)
    assert 0 < out[0, 0, 0, 3] < 0.5 < out[0, 0, 0, 4] < 1


@pytest.mark.parametrize(
    "attack", ["pgd-linf:0.1", "pgd-l2:1", "pgd-l1:2", "noise:0.3", "rotate:20", "translate:1", "blur:1"]
)
def test_no_attack_raises_accuracy(attack):
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[:1400]), y[:1400]).backward()
        opt.step()
    test_x, test_y = x[1400:], y[1400:]
    with torch.no_grad():
        clean = float((model(test_x).argmax(-1) == test_y).float().mean())
    robust = robust_accuracy(model.eval(), test_x, test_y, AttackSpec.parse(attack), pgd_steps=5)
    deterministic = not attack.startswith("noise")
    assert robust <= clean if deterministic else robust <= clean + 0.05
    assert robust < clean or attack.startswith(("noise", "blur"))  # the worst-case attacks really bite


def test_pareto_front_and_interval():
    points = {"a": (0.9, 0.5), "b": (0.95, 0.6), "c": (0.8, 0.1), "d": (0.85, 0.2), "e": (0.8, 0.3)}
    assert pareto_front(points, higher_y_is_better=False) == ["c", "d", "a", "b"]
    assert pareto_front(points, higher_y_is_better=True) == ["b"]
    stats = interval([0.1, 0.2, 0.3])
    assert math.isclose(stats["mean"], 0.2)
    assert math.isclose(stats["high"] - 0.2, 4.302653 * 0.1 / math.sqrt(3), rel_tol=1e-5)  # t(0.975, 2) = 4.3027
    assert interval([0.9, 1.0, 1.0], bounds=(0.0, 1.0))["high"] == 1.0
    assert interval([0.5])["low"] == 0.5 and interval([float("nan")])["n"] == 0
