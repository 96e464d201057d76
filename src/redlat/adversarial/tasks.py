"""What a trainer needs to know about the data: the defender's loss, the attacker's objectives, the token mask.

A batch is a mapping of tensors. `ClassificationTask`: `x`, `y` (and `target`, the class a targeted attacker pulls
toward). `SequenceClassificationTask` (a text classifier): `input_ids`, `attention_mask`, `labels`; every real token
may be perturbed. `LanguageModelTask`: `input_ids`, `attention_mask`, `labels` (-100 where no loss); for targeted
LAT the batch holds two such mappings, `safe` and `harmful` (prompt + completion, the prompt at the same positions in
both, `prompt_mask` marking its tokens), and optionally `retain` (benign data trained on without perturbation).

`LanguageModelTask(loss_on=...)` names what the untargeted attacker and the defender score: the completion's tokens
(targeted LAT's setup, Sheshadri et al. 2024; the attacker perturbs the prompt's tokens) or every token of the
dialogue (Casper et al. 2024's LAT code, which fine-tunes on whole sequences; the attacker perturbs every real token).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from torch import nn

from redlat.adversarial.objectives import (
    classification_loss,
    dialogue_labels,
    logits_of,
    sequence_logits,
    targeted_classification,
    targeted_lm,
    token_losses,
    token_unlikelihood,
    unlikelihood,
    untargeted_classification,
    untargeted_lm,
    untargeted_sequence_classification,
)
from redlat.adversarial.pgd import Objective
from redlat.errors import ConfigError

Batch = Mapping[str, Any]


class Task(Protocol):
    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Per-example loss the defender minimises (on the true / safe output)."""
        ...

    def away_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Per-example loss for pushing away from the targeted attacker's output."""
        ...

    def retain_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor | None:
        """Per-example loss on benign data kept without perturbation (None: the batch has none)."""
        ...

    def untargeted(self, batch: Batch) -> Objective: ...

    def targeted(self, batch: Batch) -> Objective: ...

    def mask(self, batch: Batch, *, targeted: bool) -> torch.Tensor | None:
        """Which tokens may be perturbed (batch x tokens), or None for every position."""
        ...


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {key: to_device(value, device) for key, value in batch.items()}
    return batch


def _need(batch: Batch, key: str, what: str) -> Any:
    if key not in batch:
        raise ConfigError(f"{what} needs the batch key {key!r}; the batch has {', '.join(sorted(batch)) or 'none'}")
    return batch[key]


@dataclass(frozen=True)
class ClassificationTask:
    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return classification_loss(model, batch["x"], batch["y"])

    def away_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        target = _need(batch, "target", "targeted LAT")
        return unlikelihood(logits_of(model(batch["x"])).float(), target)

    def retain_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor | None:
        retain = batch.get("retain")
        return None if retain is None else classification_loss(model, retain["x"], retain["y"])

    def untargeted(self, batch: Batch) -> Objective:
        return untargeted_classification(batch["x"], batch["y"])

    def targeted(self, batch: Batch) -> Objective:
        return targeted_classification(batch["x"], _need(batch, "target", "targeted LAT"), away=batch["y"])

    def mask(self, batch: Batch, *, targeted: bool) -> torch.Tensor | None:
        return None


@dataclass(frozen=True)
class SequenceClassificationTask:
    """A Hugging Face sequence classifier's task: cross-entropy on `labels`; the attacker may perturb every real token
    (the attention mask). Untargeted only."""

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(sequence_logits(model, batch), batch["labels"], reduction="none")

    def away_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        raise ConfigError("targeted LAT is not offered for text classifiers")

    def retain_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor | None:
        return None

    def untargeted(self, batch: Batch) -> Objective:
        return untargeted_sequence_classification(batch)

    def targeted(self, batch: Batch) -> Objective:
        raise ConfigError("targeted LAT is not offered for text classifiers")

    def mask(self, batch: Batch, *, targeted: bool) -> torch.Tensor | None:
        return batch["attention_mask"]


@dataclass(frozen=True)
class LanguageModelTask:
    loss_on: Literal["completion", "dialogue"] = "completion"

    def __post_init__(self) -> None:
        if self.loss_on not in ("completion", "dialogue"):
            raise ConfigError(f"loss_on must be 'completion' or 'dialogue', not {self.loss_on!r}")

    def _scored(self, part: Batch) -> Batch:
        """The mapping with the labels this task scores."""
        return {**part, "labels": dialogue_labels(part)} if self.loss_on == "dialogue" else part

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        safe = self._scored(batch.get("safe", batch))
        return token_losses(model, safe, safe["labels"])

    def away_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        harmful = _need(batch, "harmful", "targeted LAT")
        return token_unlikelihood(model, harmful, harmful["labels"])

    def retain_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor | None:
        retain = batch.get("retain")
        return None if retain is None else token_losses(model, retain, retain["labels"])

    def untargeted(self, batch: Batch) -> Objective:
        return untargeted_lm(self._scored(batch.get("safe", batch)))

    def targeted(self, batch: Batch) -> Objective:
        if self.loss_on == "dialogue":
            raise ConfigError("targeted LAT scores completions (toward one, away from another), not whole dialogues")
        return targeted_lm(toward=_need(batch, "harmful", "targeted LAT"), away=_need(batch, "safe", "targeted LAT"))

    def mask(self, batch: Batch, *, targeted: bool) -> torch.Tensor | None:
        if self.loss_on == "dialogue" and not targeted:
            return batch.get("safe", batch)["attention_mask"]  # every real token, prompt and completion
        if "prompt_mask" in batch:
            return batch["prompt_mask"]
        if targeted:
            raise ConfigError("targeted LAT on a language model needs 'prompt_mask' (1 on the prompt's tokens)")
        return batch.get("safe", batch)["attention_mask"]
