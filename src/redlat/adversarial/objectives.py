"""What an attacker maximises, for classifiers and for causal language models.

Each builder returns an `Objective` (model -> Outcome) over a fixed batch. Untargeted: raise the loss of the true
output. Targeted: lower the loss of a target output and, optionally, raise the loss of an output to avoid; "away"
terms use the unlikelihood -log(1 - p) (Sheshadri et al. 2024), which stays bounded where cross-entropy would not.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from redlat.adversarial.pgd import Objective, Outcome

IGNORE = -100  # label of a token that carries no loss (prompt, padding), as in transformers


def logits_of(output: object) -> torch.Tensor:
    """A model's logits, whether it returns a tensor or a transformers output."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None:
        raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}")
    return logits


def unlikelihood(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-log(1 - p(label)) per row, computed stably from log-probabilities."""
    logp = F.log_softmax(logits.float(), dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return -torch.log1p(-logp.exp().clamp(max=1 - 1e-6))


# -- classifiers ------------------------------------------------------------------------------------------------


def classification_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy."""
    return F.cross_entropy(logits_of(model(x)).float(), y, reduction="none")


def untargeted_classification(x: torch.Tensor, y: torch.Tensor) -> Objective:
    """Raise the cross-entropy of the true class; an example is won once it is misclassified."""

    def objective(model: nn.Module) -> Outcome:
        logits = logits_of(model(x)).float()
        loss = F.cross_entropy(logits, y, reduction="none")
        return Outcome(loss, logits.argmax(-1) != y, {"true": loss})

    return objective


def untargeted_sequence_classification(batch: Mapping[str, torch.Tensor]) -> Objective:
    """untargeted_classification for a token-sequence classifier (input_ids, attention_mask, labels)."""

    def objective(model: nn.Module) -> Outcome:
        logits = sequence_logits(model, batch)
        loss = F.cross_entropy(logits, batch["labels"], reduction="none")
        return Outcome(loss, logits.argmax(-1) != batch["labels"], {"true": loss})

    return objective


def sequence_logits(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return logits_of(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])).float()


def targeted_classification(x: torch.Tensor, target: torch.Tensor, away: torch.Tensor | None = None) -> Objective:
    """Lower the cross-entropy of `target` (and raise -log(1 - p) of `away`); won once the target is predicted."""

    def objective(model: nn.Module) -> Outcome:
        logits = logits_of(model(x)).float()
        toward = F.cross_entropy(logits, target, reduction="none")
        loss = -toward
        parts = {"toward": toward}
        if away is not None:
            keep = unlikelihood(logits, away)
            loss = loss - keep
            parts["away"] = keep
        return Outcome(loss, logits.argmax(-1) == target, parts)

    return objective


# -- causal language models --------------------------------------------------------------------------------------


def token_losses(model: nn.Module, batch: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Per-example mean next-token cross-entropy over the labelled (non -100) positions."""
    logits = logits_of(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))
    return _mean_over_tokens(logits, labels, lambda lg, lb: F.cross_entropy(lg, lb, reduction="none"))


def token_unlikelihood(model: nn.Module, batch: Mapping[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    logits = logits_of(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))
    return _mean_over_tokens(logits, labels, unlikelihood)


def _mean_over_tokens(logits: torch.Tensor, labels: torch.Tensor, per_token: object) -> torch.Tensor:
    shifted = logits[:, :-1].float()  # position t predicts token t + 1
    targets = labels[:, 1:]
    real = targets != IGNORE
    values = per_token(shifted.reshape(-1, shifted.shape[-1]), targets.clamp_min(0).reshape(-1))  # type: ignore[operator]
    values = values.reshape(targets.shape) * real
    return values.sum(dim=1) / real.sum(dim=1).clamp_min(1)


def dialogue_labels(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Labels on every real token of the sequence (prompt and completion; padding ignored): the loss on the whole
    dialogue, as plain language-model fine-tuning (and Casper et al.'s LAT code) computes it."""
    return batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE)


def untargeted_lm(batch: Mapping[str, torch.Tensor], labels_key: str = "labels") -> Objective:
    """Raise the loss of the labelled (true) completion tokens."""

    def objective(model: nn.Module) -> Outcome:
        loss = token_losses(model, batch, batch[labels_key])
        return Outcome(loss, None, {"true": loss})

    return objective


def targeted_lm(toward: Mapping[str, torch.Tensor], away: Mapping[str, torch.Tensor] | None = None) -> Objective:
    """Lower the loss of the `toward` completion (e.g. the harmful one) and raise -log(1 - p) on the `away` one.

    Each mapping holds input_ids, attention_mask and labels for prompt + completion, with the prompt at the same
    positions in both, so one perturbation of the prompt tokens serves both passes."""

    def objective(model: nn.Module) -> Outcome:
        pull = token_losses(model, toward, toward["labels"])
        loss = -pull
        parts = {"toward": pull}
        if away is not None:
            push = token_unlikelihood(model, away, away["labels"])
            loss = loss - push
            parts["away"] = push
        return Outcome(loss, None, parts)

    return objective
