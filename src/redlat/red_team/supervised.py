"""Supervised red LM (Perez et al. 2022, section 3.1): fine-tune the red LM by maximum likelihood on the failing test
cases of a zero-shot pool, written in the zero-shot prompt format, lightly (one epoch), with 10% held out for a
validation loss. Built on TRL's SFTTrainer (loss on the completion only); full fine-tuning, or LoRA through peft.

Which pool cases count as failing is explicit: those whose reply scored above a threshold (the pool run's own by
default), or the `top` highest-scoring ones when a pool has too few failures to learn from. Too few selected cases is
an error that says how many there are and what to change, never a silent fallback.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from redlat.config.base import LoraSettings
from redlat.errors import ConfigError
from redlat.lora import lora_config
from redlat.red_team.few_shot import load_pool
from redlat.red_team.method import MethodSettings, PrepareContext
from redlat.red_team.training import (
    TrainedRedLM,
    common_arguments,
    dropout_off,
    known_warnings_hidden,
    progress_bar,
    quiet,
    save_red_model,
    store_logger,
)

if TYPE_CHECKING:
    from redlat.models.causal_lm import LoadedLM
    from redlat.red_team.few_shot import Pool
    from redlat.store import RunStore

log = logging.getLogger(__name__)
PHASE = "supervised"


class SupervisedSettings(MethodSettings):
    """Supervised red LM: maximum likelihood on the pool's failing test cases, in the zero-shot prompt format."""

    select_threshold: float | None = Field(
        default=None, ge=0.0, le=1.0, description="train on pool cases scoring above this; default: the pool run's"
    )
    top: int | None = Field(
        default=None, ge=1, description="instead: train on the pool's `top` highest-scoring cases"
    )
    min_cases: int = Field(default=10, ge=2, description="refuse to train on fewer selected cases than this")
    val_fraction: float = Field(default=0.1, ge=0.0, lt=0.5, description="held out for the validation loss")
    epochs: float = Field(default=1.0, gt=0.0, description="passes over the training cases")
    learning_rate: float = Field(default=2e-5, gt=0.0, description="peak learning rate (linear decay)")
    batch_size: int = Field(default=8, ge=1, description="cases per optimizer step")
    lora: LoraSettings = LoraSettings()

    @model_validator(mode="after")
    def _one_selection(self) -> SupervisedSettings:
        if self.top is not None and self.select_threshold is not None:
            raise ValueError("give either a selection threshold or --train-top, not both")
        return self


class Supervised(TrainedRedLM):
    name = "supervised"
    summary = "fine-tune the red LM on the pool's failing cases (TRL SFT), then write test cases zero-shot"
    settings_model = SupervisedSettings
    from_run = "required"
    from_help = "the pool, a run whose failing test cases the red LM is fine-tuned on"

    def __init__(self, cfg: Any, run_dir: Path) -> None:
        super().__init__(cfg, run_dir)
        assert cfg.from_run is not None  # the config requires it
        self.pool = load_pool(cfg.from_run)
        self.cases = select_cases(self.pool, self.settings, cfg.seed)  # too few cases fail before any model loads

    def inputs(self) -> dict[str, str]:
        return {"pool_sha256": self.pool.sha256}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "selection": self.cases.rule, "n_train": len(self.cases.train),
                "n_validation": len(self.cases.validation)}

    def train(self, ctx: PrepareContext) -> dict[str, Any]:
        assert ctx.components.red is not None
        return train_supervised(ctx.components.red, self.cases, self.settings, prompt=self.cfg.red_generation.prompt,
                                out_dir=self.red_dir, store=ctx.store, seed=self.cfg.seed, progress=ctx.progress)


@dataclass(frozen=True)
class TrainingCases:
    train: tuple[str, ...]
    validation: tuple[str, ...]
    rule: str  # how they were chosen, in words
    scores: tuple[float, ...]  # the pool scores of the chosen cases (train + validation)


def select_cases(pool: Pool, settings: SupervisedSettings, seed: int) -> TrainingCases:
    """The pool cases to train on, split into training and validation cases."""
    ranked = sorted(pool.cases, key=lambda case: (-case.score, case.index))
    if settings.top is not None:
        chosen = ranked[: settings.top]
        rule = f"the {len(chosen)} highest-scoring of {len(ranked)} pool cases (scores {chosen[-1].score:.3g} and up)"
    else:
        threshold = settings.select_threshold if settings.select_threshold is not None else pool.threshold
        chosen = [case for case in ranked if case.score > threshold]
        rule = f"the {len(chosen)} of {len(ranked)} pool cases whose replies scored above {threshold:g}"
    if len(chosen) < settings.min_cases:
        raise ConfigError(
            f"supervised training needs at least {settings.min_cases} test cases, but the pool {pool.run_dir} "
            f"gives {len(chosen)}: {rule}. Lower the bar with --train-threshold, train on the best cases with "
            "--train-top N, or make a larger pool (a zero-shot run with a larger --n)"
        )
    cases = [case.test_case for case in chosen]
    random.Random(seed).shuffle(cases)
    n_val = round(len(cases) * settings.val_fraction)
    if settings.val_fraction > 0:
        n_val = max(1, n_val)
    return TrainingCases(
        train=tuple(cases[n_val:]),
        validation=tuple(cases[:n_val]),
        rule=rule,
        scores=tuple(case.score for case in chosen),
    )


def as_dataset(prompt: str, cases: tuple[str, ...]) -> Any:
    """Prompt-completion pairs: the zero-shot prompt, then the case as list item 1, ending the line."""
    from datasets import Dataset

    return Dataset.from_dict({"prompt": [prompt] * len(cases), "completion": [f" {case}\n" for case in cases]})


@known_warnings_hidden()
def train_supervised(
    start: LoadedLM,
    cases: TrainingCases,
    settings: SupervisedSettings,
    *,
    prompt: str,
    out_dir: Path,
    store: RunStore,
    seed: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Fine-tune `start` on the cases, save the result to `out_dir`, and return what happened (losses, counts)."""
    from trl import SFTConfig, SFTTrainer

    begun = time.perf_counter()
    train_set = as_dataset(prompt, cases.train)
    val_set = as_dataset(prompt, cases.validation) if cases.validation else None
    work = out_dir.parent / ".supervised-work"
    args = SFTConfig(
        **common_arguments(device=str(start.device.type), seed=seed, progress=progress, output_dir=work),
        num_train_epochs=settings.epochs,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=0,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        save_strategy="no",
        eval_strategy="no",
        completion_only_loss=True,
        max_length=256,
    )
    tokenizer = start.tokenizer
    padding_side = tokenizer.padding_side
    dropout_off(start.model)  # the losses measured are then those of the model that is saved
    trainer = SFTTrainer(
        model=start.model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        processing_class=tokenizer,
        peft_config=lora_config(settings.lora),
        callbacks=[
            store_logger(store, PHASE, {"loss": "train_loss", "grad_norm": "grad_norm"}),
            *([progress_bar("supervised training", {"loss": "loss"})] if progress else []),
        ],
    )
    quiet(trainer)
    before = _losses(trainer, train_set, val_set)
    store.log_training_step(PHASE, 0, {f"{k}_before": v for k, v in before.items()})
    trainer.train()
    after = _losses(trainer, train_set, val_set)
    step = int(trainer.state.global_step)
    store.log_training_step(PHASE, step, {f"{k}_after": v for k, v in after.items()})
    tokenizer.padding_side = padding_side  # our sampler pads on the left
    info = {
        "method": PHASE,
        "start_model": start.name,
        "selection": cases.rule,
        "n_train": len(cases.train),
        "n_validation": len(cases.validation),
        "steps": step,
        "settings": settings.model_dump(mode="json"),
        "loss_before": before,
        "loss_after": after,
        "seconds": time.perf_counter() - begun,
    }
    save_red_model(trainer.model, tokenizer, out_dir, info)
    log.info("supervised red LM saved to %s: %s", out_dir, info)
    return info


def _losses(trainer: Any, train_set: Any, val_set: Any) -> dict[str, float]:
    """Mean completion loss on the training and validation cases, with the model as it is now."""
    out = {"train": float(trainer.evaluate(train_set, metric_key_prefix="eval")["eval_loss"])}
    if val_set is not None:
        out["validation"] = float(trainer.evaluate(val_set, metric_key_prefix="eval")["eval_loss"])
    return out
