"""`redlat experiment trojans-vision` and `transfer`: plant trojans, fine-tune them away (or not) with each defence,
measure. `transfer` is the same sweep with no trojans by default, AT under each norm and LAT at each block, read as
the transfer matrix (each defence's robust accuracy under each attack).

Per seed: train a classifier on data poisoned with every trojan (kept in RUN_DIR/base_models/, so a resumed run does
not retrain it); measure it; then, for each defence, copy it and fine-tune one epoch on clean data (the defender
never sees a trigger) and measure clean accuracy, each trojan's attack success rate and robust accuracy under the
evaluation attacks. Each (defence, seed) is written to the run store in one transaction with its training log, so an
interrupted sweep resumes at the first missing one and stores exactly what an uninterrupted one does. With `--ray`,
each seed's poisoned model and each (defence, seed) is a Ray task (redlat.scale.sweeps); results are stored as they
arrive.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from redlat.adversarial.attack_specs import AttackSpec, attack_names
from redlat.adversarial.hooks import find_module
from redlat.adversarial.pgd import PGDSettings, typical_norm
from redlat.adversarial.robustness import robust_accuracy
from redlat.adversarial.tasks import ClassificationTask
from redlat.adversarial.trainers import AdversarialTrainer, Defence, StepLog, TrainSettings
from redlat.adversarial.trojans import Trojan, attack_success_rate, poison, predict, trigger_from_spec
from redlat.atomic import write_atomic
from redlat.config import DefenceSpec, TrojansVisionConfig
from redlat.errors import ConfigError
from redlat.experiments.images import ImageData, build_model, load_images
from redlat.experiments.layout import Column, Front, Layout
from redlat.experiments.runs import open_experiment_store
from redlat.experiments.sweep import BarFactory, Done, Progress, run_sweep
from redlat.generation import derive_seed
from redlat.scale.sweeps import BaseStep, CellResult, SettingStep
from redlat.store import RunStore

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class VisionExperiment:
    """Which of the two image experiments a sweep is: its command (the store's) and its model before any defence."""

    command: str
    base: str  # the setting name of the model before any defence
    base_label: str


TROJANS_VISION = VisionExperiment("experiment trojans-vision", "poisoned", "poisoned, before fine-tuning")
TRANSFER = VisionExperiment("experiment transfer", "base", "trained, before fine-tuning")


def trojans_from_config(cfg: TrojansVisionConfig) -> list[Trojan]:
    return [Trojan(spec.name, trigger_from_spec(spec.kind, dict(spec.params)), spec.target) for spec in cfg.trojans]


def _batches(x: torch.Tensor, y: torch.Tensor, size: int, seed: int, epochs: int) -> list[dict[str, torch.Tensor]]:
    out = []
    for epoch in range(epochs):
        gen = torch.Generator().manual_seed(derive_seed(seed, "epoch", epoch))
        order = torch.randperm(len(x), generator=gen)
        out += [{"x": x[order[i : i + size]], "y": y[order[i : i + size]]} for i in range(0, len(x), size)]
    return out


def open_store(
    run_dir: Path, cfg: TrojansVisionConfig, provenance: dict[str, Any], experiment: VisionExperiment = TROJANS_VISION
) -> RunStore:
    """A new experiment store, or the existing one of the same config (else RunDirMismatchError; nothing written)."""
    return open_experiment_store(run_dir, experiment.command, cfg, provenance)


def base_model(
    cfg: TrojansVisionConfig, data: ImageData, trojans: Sequence[Trojan], seed: int, run_dir: Path, device: torch.device
) -> tuple[nn.Module, list[StepLog]]:
    """The poisoned model of this seed: loaded from RUN_DIR/base_models/ if a previous process trained it."""
    torch.manual_seed(derive_seed(seed, "init"))
    model = build_model(cfg.model, data, width=cfg.width)
    path = run_dir / "base_models" / f"seed-{seed}.pt"
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.to(device), []
    gen = torch.Generator().manual_seed(derive_seed(seed, "poison"))
    x, y, _ = poison(data.train_x, data.train_y, trojans, rate=cfg.poison_rate, generator=gen)
    settings = TrainSettings(lr=cfg.base_lr, seed=derive_seed(seed, "base") % 2**31)
    trainer = AdversarialTrainer(model, ClassificationTask(), Defence(), settings, device=device)
    logs = trainer.fit(_batches(x, y, cfg.batch_size, derive_seed(seed, "base"), cfg.base_epochs))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_atomic(path, lambda tmp: torch.save(state, tmp))
    return model, logs


def make_defence(spec: DefenceSpec, cfg: TrojansVisionConfig, model: nn.Module, data: ImageData) -> Defence:
    """The trainer's Defence for a spec; LAT's relative eps becomes absolute on the model's own activations (with
    several layers, one eps for all: the fraction of the smallest layer's median norm)."""
    if spec.kind == "none":
        return Defence()
    if spec.kind == "at":
        return Defence("at", ("",), "input", PGDSettings(spec.norm, spec.eps, cfg.attack_steps, bounds=(0.0, 1.0)))
    eps = spec.eps
    if spec.relative_eps:
        sample = data.train_x[:512].to(next(model.parameters()).device)
        scale = min(typical_norm(model, layer, lambda m: m(sample), spec.norm) for layer in spec.layers)
        eps = spec.eps * scale
    return Defence("lat", spec.layers, "output", PGDSettings(norm=spec.norm, eps=eps, steps=cfg.attack_steps))


def evaluate(
    model: nn.Module, cfg: TrojansVisionConfig, data: ImageData, trojans: Sequence[Trojan], seed: int
) -> dict[str, float]:
    device = next(model.parameters()).device
    x, y = data.test_x.to(device), data.test_y.to(device)
    metrics = {"clean_acc": float((predict(model, x) == y).float().mean())}
    for trojan in trojans:
        metrics[f"asr:{trojan.name}"] = attack_success_rate(model, x, y, trojan)
    held_out = []
    for text in cfg.eval_attacks:
        spec = AttackSpec.parse(text)
        value = robust_accuracy(model, x, y, spec, pgd_steps=cfg.eval_pgd_steps, seed=derive_seed(seed, "eval"))
        metrics[f"robust:{spec.name}"] = value
        if spec.family in cfg.held_out:
            held_out.append(value)
    metrics["mean_asr"] = sum(metrics[f"asr:{t.name}"] for t in trojans) / max(len(trojans), 1)
    metrics["heldout_acc"] = sum(held_out) / len(held_out)
    return metrics


def describe(spec: DefenceSpec | None, experiment: VisionExperiment = TROJANS_VISION) -> dict[str, Any]:
    if spec is None:
        return {"kind": experiment.base, "family": experiment.base, "label": experiment.base_label}
    return spec.describe()


def run_trojans_vision(
    cfg: TrojansVisionConfig,
    run_dir: Path,
    *,
    trojans: Sequence[Trojan] | None = None,
    provenance: dict[str, Any] | None = None,
    progress: Progress | None = None,
    bar: BarFactory | None = None,
    experiment: VisionExperiment = TROJANS_VISION,
) -> RunStore:
    """Run (or resume) the sweep into run_dir; returns the open store (the caller closes it)."""

    trojans = list(trojans) if trojans is not None else trojans_from_config(cfg)
    data = load_images(
        cfg.dataset, data_dir=cfg.data_dir, image_size=cfg.image_size, test_fraction=cfg.test_fraction,
        seed=cfg.data_seed,
    )
    for trojan in trojans:
        if not 0 <= trojan.target < data.classes:
            raise ConfigError(f"trojan {trojan.name!r} targets class {trojan.target}; {data.name} has {data.classes}")
    probe = build_model(cfg.model, data, width=cfg.width)
    for spec in cfg.defences:
        for layer in spec.layers:
            find_module(probe, layer)  # a wrong layer name fails now, not after the poisoned model is trained
    store = open_store(run_dir, cfg, provenance or {}, experiment)

    def steps(done: Done) -> tuple[BaseStep, SettingStep]:
        base_done = frozenset(seed for seed in cfg.seeds if (experiment.base, seed) in done)
        return (functools.partial(_base_step, cfg, data, trojans, run_dir, base_done, experiment),
                functools.partial(_defence_step, cfg, data, trojans))

    return run_sweep(store, seeds=cfg.seeds, references=(experiment.base,), settings=cfg.defences, steps=steps,
                     line=_line, ray=cfg.ray, progress=progress, bar=bar)


def _base_step(
    cfg: TrojansVisionConfig,
    data: ImageData,
    trojans: Sequence[Trojan],
    run_dir: Path,
    base_done: frozenset[int],
    experiment: VisionExperiment,
    seed: int,
) -> tuple[dict[str, torch.Tensor], list[CellResult]]:
    """The seed's poisoned model (trained, or read from the run directory) as a CPU state dict, and its results
    unless they are stored already."""
    from redlat.device import resolve_device

    t0 = time.perf_counter()
    base, base_logs = base_model(cfg, data, trojans, seed, run_dir, resolve_device(cfg.device))
    state = {k: v.detach().cpu() for k, v in base.state_dict().items()}
    if seed in base_done:
        return state, []
    metrics = evaluate(base, cfg, data, trojans, seed) | {"train_seconds": time.perf_counter() - t0}
    return state, [CellResult(experiment.base, seed, metrics, describe(None, experiment),
                              [log.to_dict() for log in base_logs])]


def _defence_step(
    cfg: TrojansVisionConfig,
    data: ImageData,
    trojans: Sequence[Trojan],
    base_state: dict[str, torch.Tensor],
    spec: DefenceSpec,
    seed: int,
) -> CellResult:
    """One defence fine-tuned from the seed's poisoned model, and its measures."""
    from redlat.device import resolve_device

    device = resolve_device(cfg.device)
    torch.manual_seed(derive_seed(seed, "init"))
    model = build_model(cfg.model, data, width=cfg.width)
    model.load_state_dict(base_state)
    model.to(device)
    defence = make_defence(spec, cfg, model, data)
    settings = TrainSettings(lr=cfg.finetune_lr, seed=derive_seed(seed, spec.name) % 2**31)
    start = time.perf_counter()
    logs = AdversarialTrainer(model, ClassificationTask(), defence, settings, device=device).fit(
        _batches(data.train_x, data.train_y, cfg.batch_size, derive_seed(seed, "finetune"), cfg.finetune_epochs)
    )
    seconds = time.perf_counter() - start
    metrics = evaluate(model, cfg, data, trojans, seed)
    metrics |= {"train_seconds": seconds, "eps": defence.attack.eps if spec.kind != "none" else 0.0}
    return CellResult(spec.name, seed, metrics, describe(spec), [log.to_dict() for log in logs])


def layout(config: dict[str, Any], *, transfer: bool = False) -> Layout:
    """trojans-vision's layout; `transfer`'s shows every attack's robust accuracy (the transfer matrix) instead."""
    from redlat.config import DefenceSpec

    trojans = [t["name"] for t in config.get("trojans", [])]
    held_out = list(config.get("held_out", []))
    trojan_front = Front("clean_vs_trojan_success", "mean_asr", False,
                         "mean trojan attack success rate (lower is better)", "Clean accuracy vs trojan success", "T")
    robust_front = Front("clean_vs_heldout_robustness", "heldout_acc", True, "held-out robust accuracy (higher is "
                         "better)", "Clean accuracy vs robustness to held-out attacks", "R")
    fronts = (trojan_front, robust_front) if trojans or not transfer else (robust_front,)
    names = attack_names(config.get("eval_attacks", [])) if transfer else []
    attacks = [Column(name, f"robust:{name}") for name in names]
    marks = "T = clean vs trojan success, R = clean vs held-out robustness" if len(fronts) == 2 else \
        "R = clean vs held-out robustness"
    panels: tuple[tuple[str, tuple[str, ...]], ...] = ()
    if transfer:  # at most three attacks per table: a row of every attack's interval would not fit a terminal
        trained = tuple(c.metric for c in attacks if c.header.split(":")[0] not in held_out)
        unseen = tuple(c.metric for c in attacks if c.header.split(":")[0] in held_out)
        chunks = [trained[i : i + 3] for i in range(0, len(trained), 3)] or [()]
        panels = (("clean and the norms' PGD", ("clean_acc", *(f"asr:{t}" for t in trojans), *chunks[0])),
                  *(("the norms' PGD, continued", chunk) for chunk in chunks[1:]),
                  ("held-out attacks", (*unseen, "heldout_acc")))
    return Layout(
        experiment="transfer" if transfer else "trojans-vision",
        x="clean_acc",
        x_label="clean accuracy",
        references=(("base", "base model (no fine-tuning)"),) if transfer else
        (("poisoned", "poisoned (no fine-tuning)"),),
        fronts=fronts,
        columns=(
            Column("clean acc", "clean_acc"),
            *(Column(f"ASR {t}", f"asr:{t}") for t in trojans),
            *attacks,
            Column("held-out acc", "heldout_acc"),
        ),
        unbounded=("train_seconds", "eps"),
        defence_names=tuple(DefenceSpec.model_validate(d).name for d in config.get("defences", [])),
        caption=f"front: {marks} (held out: {', '.join(held_out)})",
        title="Transfer between perturbation types: robust accuracy under each attack" if transfer else
        "Trojans and defences",
        panels=panels,
    )


def transfer_layout(config: dict[str, Any]) -> Layout:
    return layout(config, transfer=True)


def _line(result: CellResult) -> str:
    metrics = result.metrics
    trojans = any(key.startswith("asr:") for key in metrics)
    return (
        f"{result.setting:<24} seed {result.seed}: clean {100 * metrics['clean_acc']:.1f}%  "
        + (f"trojan success {100 * metrics['mean_asr']:.1f}%  " if trojans else "")
        + f"held-out {100 * metrics['heldout_acc']:.1f}%"
    )


def open_run(
    cfg: TrojansVisionConfig,
    run_dir: Path,
    *,
    trojans: Sequence[Trojan] | None = None,
    progress: Progress | None = None,
    bar: BarFactory | None = None,
    experiment: VisionExperiment = TROJANS_VISION,
) -> RunStore:
    """The sweep with its provenance (the classifier, the data, the trojans): its finished store, open."""
    from redlat.provenance import collect

    models = {"classifier": cfg.model, "dataset": cfg.dataset, "trojans": [t.model_dump() for t in cfg.trojans]}
    if trojans is not None:
        models["trojans"] = [{"name": t.name, "trigger": repr(t.trigger), "target": t.target} for t in trojans]
    return run_trojans_vision(cfg, run_dir, trojans=trojans, provenance=collect(models), progress=progress, bar=bar,
                              experiment=experiment)


def open_transfer_run(
    cfg: TrojansVisionConfig, run_dir: Path, *, progress: Progress | None = None, bar: BarFactory | None = None
) -> RunStore:
    """`transfer`'s sweep: open_run as the transfer experiment."""
    return open_run(cfg, run_dir, progress=progress, bar=bar, experiment=TRANSFER)
