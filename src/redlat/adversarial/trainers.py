"""One trainer for plain fine-tuning, AT, LAT and targeted LAT.

Each step: the attacker runs PGD on the batch (weights frozen, model in eval mode by default) at the defence's
modules; the defender then takes one optimizer step on the loss of the perturbed forward pass.

- `none`: plain fine-tuning on the batch (the baseline).
- `at`: the perturbation is on the input (images: the root module's input, `layers=("",)`, `where="input"`) or on
  the token embeddings (text: the embedding module's output). Same code as LAT; only the place differs.
- `lat`: untargeted PGD on one or several hidden layers; the defender minimises the loss of the true output.
- `targeted-lat`: the attacker pulls toward the batch's harmful output (and away from the safe one); the defender
  minimises loss(safe) + away_weight * unlikelihood(harmful) under that attack, plus retain_weight * a clean loss
  on the batch's `retain` data (Sheshadri et al. 2024).

Every step is logged (losses, perturbation norms, seconds); checkpoints hold the trainable weights, the optimizer and
the step, written atomically, so `fit` resumes where a killed process stopped, with the same result (each step's
randomness is seeded from (seed, step)).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from redlat.adversarial.hooks import Where, perturbed
from redlat.adversarial.pgd import PGDSettings, pgd
from redlat.adversarial.tasks import Batch, Task, to_device
from redlat.atomic import write_atomic
from redlat.config import LoraSettings
from redlat.errors import ConfigError
from redlat.generation import derive_seed

Kind = Literal["none", "at", "lat", "targeted-lat"]
KINDS: tuple[str, ...] = ("none", "at", "lat", "targeted-lat")
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class Defence:
    """What the defender trains against: where the attacker perturbs, and with which attack."""

    kind: Kind = "none"
    layers: tuple[str, ...] = ()
    where: Where = "output"
    attack: PGDSettings = field(default_factory=PGDSettings)
    away_weight: float = 1.0  # targeted-lat: weight of pushing away from the attacker's target
    retain_weight: float = 1.0  # targeted-lat: weight of the clean retain loss

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"defence kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind != "none" and not self.layers:
            raise ConfigError(f"a {self.kind} defence needs the modules to perturb (layers)")

    def describe(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainSettings:
    lr: float = 1e-3
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    seed: int = 0
    checkpoint_every: int = 0  # steps between checkpoints (0: only at the end; needs a checkpoint_dir)


@dataclass
class StepLog:
    step: int  # 1-based optimizer step
    loss: float  # what the defender minimised
    clean_loss: float  # defender's task loss without perturbation (eval mode for attacked kinds)
    adv_loss: float | None  # the same loss under the attack (None for plain fine-tuning)
    norms: dict[str, float]  # mean perturbation norm per module
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)  # away and retain losses for targeted LAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_optimizer(params: Iterable[nn.Parameter], s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
    if s.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=0.9, weight_decay=s.weight_decay)
    raise ConfigError(f"optimizer must be adam, adamw or sgd, not {s.optimizer!r}")


def hook_root(model: nn.Module) -> nn.Module:
    """The module whose names the defence's layers use: for a peft (LoRA) model, the wrapped base model."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


class AdversarialTrainer:
    def __init__(
        self,
        model: nn.Module,
        task: Task,
        defence: Defence,
        settings: TrainSettings | None = None,
        *,
        device: torch.device | None = None,
        checkpoint_dir: str | Path | None = None,
        on_step: Callable[[StepLog], None] | None = None,
    ) -> None:
        self.settings = settings or TrainSettings()
        self.device = device or next(model.parameters()).device
        self.model = model.to(self.device)
        self.task = task
        self.defence = defence
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.on_step = on_step
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        if not self.trainable:
            raise ConfigError("the model has no trainable parameters")
        self.optimizer = make_optimizer(self.trainable, self.settings)
        self.step = 0

    # -- checkpoints ---------------------------------------------------------------------------------------------

    def _trainable_state(self) -> dict[str, torch.Tensor]:
        names = {id(p) for p in self.trainable}
        return {n: p.detach().cpu() for n, p in self.model.named_parameters() if id(p) in names}

    def save_checkpoint(self) -> Path:
        if self.checkpoint_dir is None:
            raise ConfigError("no checkpoint_dir was given")
        state = {
            "step": self.step,
            "model": self._trainable_state(),
            "optimizer": self.optimizer.state_dict(),
            "defence": self.defence.describe(),
        }
        target = self.checkpoint_dir / CHECKPOINT
        write_atomic(target, lambda tmp: torch.save(state, tmp))
        return target

    def load_checkpoint(self) -> bool:
        """Resume from the checkpoint in checkpoint_dir, if there is one; True if it did."""
        if self.checkpoint_dir is None or not (self.checkpoint_dir / CHECKPOINT).exists():
            return False
        state = torch.load(self.checkpoint_dir / CHECKPOINT, map_location=self.device, weights_only=True)
        if state["defence"] != self.defence.describe():
            raise ConfigError(f"the checkpoint in {self.checkpoint_dir} was trained with another defence")
        missing = set(self._trainable_state()) - set(state["model"])
        if missing:
            raise ConfigError(f"the checkpoint in {self.checkpoint_dir} lacks {len(missing)} trainable tensors")
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                if name in state["model"]:
                    p.copy_(state["model"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        return True

    # -- training ------------------------------------------------------------------------------------------------

    def fit(self, batches: Iterable[Batch], *, resume: bool = True, progress: Any = None) -> list[StepLog]:
        """One pass over `batches` (a deterministic iterable). Resuming skips the batches already trained on."""
        if resume:
            self.load_checkpoint()
        logs: list[StepLog] = []
        every = self.settings.checkpoint_every
        for batch in islice(batches, self.step, None):
            log = self.train_step(batch)
            logs.append(log)
            if self.on_step is not None:
                self.on_step(log)
            if progress is not None:
                progress.update(1)
            if self.checkpoint_dir is not None and every and self.step % every == 0:
                self.save_checkpoint()
        if self.checkpoint_dir is not None:
            self.save_checkpoint()
        return logs

    def train_step(self, batch: Batch) -> StepLog:
        start = time.perf_counter()
        batch = to_device(batch, self.device)
        step = self.step + 1
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(derive_seed(self.settings.seed, step, "step"))
            log = self._step(batch, step)
        self.step = step
        log.seconds = time.perf_counter() - start
        return log

    def _step(self, batch: Batch, step: int) -> StepLog:
        model, task, d = self.model, self.task, self.defence
        model.train()
        self.optimizer.zero_grad(set_to_none=True)
        extra: dict[str, float] = {}
        if d.kind == "none":
            loss = task.loss(model, batch).mean()
            clean, adv, norms = loss.item(), None, {}
        else:
            targeted = d.kind == "targeted-lat"
            mask = task.mask(batch, targeted=targeted)
            objective = task.targeted(batch) if targeted else task.untargeted(batch)
            gen = torch.Generator(device=self.device).manual_seed(derive_seed(self.settings.seed, step, "pgd"))
            root = hook_root(model)
            result = pgd(root, objective, d.layers, d.attack, where=d.where, mask=mask, generator=gen)
            with perturbed(root, result.deltas, mask=mask, where=d.where):
                adv_loss = task.loss(model, batch).mean()
                loss = adv_loss
                if targeted:
                    away = task.away_loss(model, batch).mean()
                    loss = loss + d.away_weight * away
                    extra["away_loss"] = away.item()
            if targeted:
                retain = task.retain_loss(model, batch)
                if retain is not None:
                    loss = loss + d.retain_weight * retain.mean()
                    extra["retain_loss"] = retain.mean().item()
            if targeted:  # the attack's objective is not the defender's loss: measure that one apart
                with torch.no_grad():
                    clean = float(task.loss(model, batch).mean())
            else:  # the untargeted objective is the defender's loss, already measured on the clean pass
                clean = float(result.clean.loss.mean())
            adv = adv_loss.item()
            norms = {name: float(n.float().mean()) for name, n in result.norms.items()}
        loss.backward()
        if self.settings.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.settings.max_grad_norm)
        self.optimizer.step()
        return StepLog(
            step=step, loss=loss.item(), clean_loss=clean, adv_loss=adv, norms=norms, seconds=0.0, extra=extra
        )


def apply_lora(model: nn.Module, settings: LoraSettings | None = None) -> nn.Module:
    """Wrap a causal LM in peft LoRA adapters (only they train); the defence's layer names stay the base model's."""
    from peft import get_peft_model

    from redlat.lora import lora_config

    settings = settings or LoraSettings(enabled=True)
    if not settings.enabled:
        return model
    with warnings.catch_warnings():  # peft asks a deprecated transformers property; not the user's concern
        warnings.filterwarnings("ignore", category=FutureWarning)
        return get_peft_model(model, lora_config(settings))
