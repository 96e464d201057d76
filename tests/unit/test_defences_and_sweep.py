"""The one defence model (config/defences.py) and the sweep loop every trojan experiment shares
(experiments/sweep.py)."""

from __future__ import annotations

from typing import Any

import pytest

from redlat.config import BaseDefenceSpec, DefenceSpec, HardenConfig, LMDefenceSpec, TextDefenceSpec
from redlat.experiments.sweep import run_sweep
from redlat.scale.sweeps import CellResult
from redlat.store import RunStore


@pytest.mark.parametrize(
    ("spec", "name", "family"),
    [
        (DefenceSpec(), "none", "none"),
        (DefenceSpec(kind="at", norm="linf", eps=0.1), "at-linf-0.1", "at-linf"),
        (DefenceSpec(kind="lat", layers=("block2",), eps=0.5), "lat-block2-l2-0.5x", "lat-block2"),
        (TextDefenceSpec(kind="lat", layers=(2, 4), eps=0.3), "lat-2+4-0.3x", "lat-2+4"),
        (LMDefenceSpec(kind="targeted-lat", layers=(4,), eps=0.25), "tlat-4-0.25x", "tlat-4"),
        (LMDefenceSpec(kind="lat", layers=(4,), eps=8, recipe="casper2024"), "lat-4-8-casper", "lat-4 (casper2024)"),
        (LMDefenceSpec(kind="at", eps=1, relative_eps=False), "at-1", "at"),
    ],
)
def test_every_domain_names_its_settings_through_the_one_model(spec: BaseDefenceSpec, name: str, family: str):
    assert isinstance(spec, BaseDefenceSpec)
    assert (spec.name, spec.family) == (name, family)
    assert spec.describe()["label"] == name and spec.describe()["family"] == family


def test_casper_rows_are_not_a_line_of_the_sheshadri_family():
    """Before: both recipes' LAT at layer 4 shared the family "lat-4", so one Pareto line joined two recipes."""
    casper = LMDefenceSpec(kind="lat", layers=(4,), eps=8, recipe="casper2024")
    sheshadri = LMDefenceSpec(kind="lat", layers=(4,), eps=0.1)
    assert casper.family != sheshadri.family


def test_validation_is_shared_and_says_what_each_domain_perturbs():
    with pytest.raises(ValueError, match=r"needs layers \(e.g. \[block2\]\)"):
        DefenceSpec(kind="lat", eps=0.5)
    with pytest.raises(ValueError, match="perturbs the input"):
        DefenceSpec(kind="at", layers=("block1",), eps=0.5)
    with pytest.raises(ValueError, match="perturbs the embeddings"):
        LMDefenceSpec(kind="at", layers=(2,), eps=0.5)
    with pytest.raises(ValueError, match="eps > 0"):
        TextDefenceSpec(kind="at")


@pytest.mark.parametrize(
    ("defence", "kind", "where"),
    [("tlat", "targeted-lat", (4,)), ("lat", "lat", (4,)), ("at", "at", (0,)), ("sft", "none", ())],
)
def test_harden_maps_its_defence_onto_the_experiments_model(defence: str, kind: str, where: tuple[int, ...]):
    spec = HardenConfig(target="t", runs=("r",), output="o", defence=defence).defence_spec  # type: ignore[arg-type]
    assert (spec.kind, spec.where) == (kind, where)


def test_harden_at_on_a_hidden_layer_is_rejected():
    with pytest.raises(ValueError, match="at perturbs the embeddings"):
        HardenConfig(target="t", runs=("r",), output="o", defence="at", layers=(3,))


class _Setting:
    def __init__(self, name: str) -> None:
        self.name = name


def _sweep(store: RunStore, built: list[Any], ran: list[tuple[str, int]]) -> None:
    def steps(done: frozenset[tuple[str, int]]):
        built.append(done)

        def base(seed: int):
            ran.append(("poisoned", seed))
            missing = ("poisoned", seed) not in done
            return f"model-{seed}", [CellResult("poisoned", seed, {"acc": 0.5}, {})] if missing else []

        def setting(start: str, spec: _Setting, seed: int) -> CellResult:
            assert start == f"model-{seed}"
            ran.append((spec.name, seed))
            return CellResult(spec.name, seed, {"acc": 0.9}, {"label": spec.name})

        return base, setting

    before = store.completed_results()
    lines: list[str] = []
    run_sweep(store, seeds=[0, 1], references=["poisoned"], settings=[_Setting("at"), _Setting("lat")],
              steps=steps, line=lambda r: f"{r.setting}/{r.seed}", progress=lines.append)
    assert lines == [f"{name}/{seed}" for name, seed in ran if (name, seed) not in before]  # one line per new cell


def test_run_sweep_resumes_only_the_missing_cells_and_builds_nothing_when_complete(tmp_path):
    with RunStore(tmp_path / "run", create=True) as store:
        store.start_run(run_id="r", command="experiment x", method="x", config={}, fingerprint="f", seed=0,
                        provenance={})
        store.write_result("poisoned", 0, {"acc": 0.5}, {})
        store.write_result("at", 0, {"acc": 0.9}, {})
        built: list[Any] = []
        ran: list[tuple[str, int]] = []
        _sweep(store, built, ran)
        # seed 0 lacks only "lat": its base model is rebuilt but its stored result is not written again
        assert ran == [("poisoned", 0), ("lat", 0), ("poisoned", 1), ("at", 1), ("lat", 1)]
        assert store.completed_results() == {(s, seed) for s in ("poisoned", "at", "lat") for seed in (0, 1)}
        assert store.run_info().status == "complete"
        built.clear()
        ran.clear()
        _sweep(store, built, ran)
        assert built == [] and ran == []  # a finished sweep loads nothing
