"""Curiosity terms of the RL red LM's reward (Hong et al. 2024, "Curiosity-driven Red-teaming for Large Language
Models"): reward a test case for being unlike what the red LM has already written, so that RL keeps finding new
failures instead of repeating one.

For a valid test case x and the history H of test cases the red LM wrote at earlier steps:
- n-gram novelty: -BLEU(x, H) / 100, x's largest sentence BLEU against any case in H (sacrebleu's 4-gram BLEU, as
  in self-BLEU), in [-1, 0];
- embedding novelty: minus the mean cosine similarity of x's sentence embedding to those of H (all-MiniLM-L6-v2
  offline), in [-1, 1];
- entropy bonus: the mean negative log-probability per token of x under the red LM that sampled it (an estimate of
  the policy's entropy; per token, so that length alone earns nothing).

Each enters the reward times its own coefficient; all are 0 (off) by default. H holds the `history` most recent
cases; it is rebuilt from the run store on resume, so a resumed run computes the rewards an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from redlat.config.base import OFFLINE_EMBEDDER


class NoveltySettings(BaseModel):
    """Coefficients of the curiosity terms (0: off) and what they compare against."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bleu: float = Field(default=0.0, ge=0.0, description="weight of the n-gram novelty, -BLEU(x, history) / 100")
    embedding: float = Field(default=0.0, ge=0.0, description="weight of the embedding novelty, -mean cosine")
    entropy: float = Field(default=0.0, ge=0.0, description="weight of the per-token negative log-probability")
    embedder: str = Field(default=OFFLINE_EMBEDDER, description="sentence-transformers model of the embedding term")
    history: int = Field(default=4096, ge=1, description="most recent earlier test cases compared against")

    @property
    def active(self) -> bool:
        return self.bleu > 0 or self.embedding > 0 or self.entropy > 0


class Novelty:
    """The history of earlier test cases and the novelty of new ones against it."""

    def __init__(self, settings: NoveltySettings, *, device: str = "cpu") -> None:
        self.settings = settings
        self.history: list[str] = []
        self._vectors: Any = None  # (len(history), d) unit vectors, when the embedding term is on
        self.embedder = None
        if settings.embedding > 0:
            from redlat.analysis.embeddings import load_embedder

            self.embedder = load_embedder(settings.embedder, device=device)

    def restore(self, batches: Sequence[Sequence[str]]) -> None:
        """Start from these earlier batches of cases (a resumed run: its stored steps'), each added as one batch."""
        self.history = []
        self._vectors = None
        for cases in batches:
            self.add(cases)

    def add(self, cases: Sequence[str]) -> None:
        import numpy as np

        if not cases:
            return
        keep = self.settings.history
        self.history = [*self.history, *cases][-keep:]
        if self.embedder is not None:
            new = self.embedder(list(cases))
            stacked = new if self._vectors is None else np.concatenate([self._vectors, new])
            self._vectors = stacked[-keep:]

    def terms(self, cases: Sequence[str]) -> dict[str, list[float]]:
        """Per case, each active novelty term (before its coefficient), against the history as it stands."""
        from redlat.diversity import max_bleu_against

        out: dict[str, list[float]] = {}
        if self.settings.bleu > 0:
            out["novelty_bleu"] = [-b / 100.0 for b in max_bleu_against(list(cases), self.history)]
        if self.embedder is not None:
            if self._vectors is None or not len(self._vectors):
                out["novelty_embedding"] = [0.0] * len(cases)
            else:
                similarity = self.embedder(list(cases)) @ self._vectors.T
                out["novelty_embedding"] = [-float(v) for v in similarity.mean(axis=1)]
        return out


def mean_token_nll(model: Any, prompt_ids: Sequence[int], completions: Sequence[Sequence[int]]) -> list[float]:
    """Per completion, the mean negative log-probability of its tokens after the prompt, under `model`."""
    import torch

    if not completions:
        return []
    device = next(model.parameters()).device
    rows = [list(prompt_ids) + list(c) for c in completions]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    mask = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, device=device)
        mask[i, : len(row)] = 1
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, ids[:, 1:, None]).squeeze(2)
    out = []
    start = len(prompt_ids) - 1  # position predicting the first completion token
    for i, completion in enumerate(completions):
        n = len(completion)
        out.append(float(-logprobs[i, start : start + n].mean()) if n else 0.0)
    return out
