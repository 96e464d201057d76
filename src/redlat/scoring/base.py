"""The one interface every scorer has: texts in, P(offensive) per text out, plus every label's score.

The same object is the red-team classifier, the RL reward (call it: it returns a plain list of floats) and the
report metric. Subclasses of `BaseScorer` only implement `_predict_batch`; batching, input checks, `__call__`
and the `ScoreBatch` bookkeeping live here once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from redlat.errors import ConfigError, RedlatError


@dataclass(frozen=True)
class ScoreBatch:
    """Scores of a batch of texts.

    scores: one score in [0, 1] per text, P(offensive) under the scorer's `label`.
    detail: per text, every label's score.
    """

    scores: list[float]
    detail: list[dict[str, float]]


@runtime_checkable
class Scorer(Protocol):
    name: str
    labels: tuple[str, ...]
    label: str
    weights: dict[str, str]

    def score(self, texts: Sequence[str]) -> ScoreBatch: ...

    def __call__(self, texts: Sequence[str]) -> list[float]: ...


def check_label(name: str, labels: Sequence[str], label: str) -> str:
    """Return `label` if the scorer has it, else raise a ConfigError that lists the labels."""
    if label not in labels:
        raise ConfigError(
            f"scorer {name!r} has no label {label!r}; its labels are: {', '.join(labels)}. "
            "Pass one of them as the offensive label (--offensive-label)."
        )
    return label


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def as_text_list(texts: Sequence[str]) -> list[str]:
    """Validate the input: a sequence of strings (a bare string is refused, it would be scored per character)."""
    if isinstance(texts, str | bytes):
        raise TypeError("score() takes a sequence of texts, not a single string; wrap it in a list")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(f"text {i} is {type(text).__name__}, not str")
    return out


class BaseScorer:
    """Shared plumbing. Subclasses set the attributes (via `__init__`) and implement `_predict_batch`."""

    name: str
    labels: tuple[str, ...]
    label: str
    weights: dict[str, str]
    batch_size: int

    def __init__(
        self,
        *,
        name: str,
        labels: Sequence[str],
        label: str,
        weights: dict[str, str],
        batch_size: int,
    ) -> None:
        self.name = name
        self.labels = tuple(labels)
        self.label = check_label(name, self.labels, label)
        self.weights = dict(weights)
        self.batch_size = check_batch_size(batch_size)
        self._label_index = self.labels.index(self.label)

    def _predict_batch(self, texts: list[str]) -> Sequence[Sequence[float]]:
        """One row per text, one probability per label (in `self.labels` order). At most batch_size texts."""
        raise NotImplementedError

    def score(self, texts: Sequence[str]) -> ScoreBatch:
        items = as_text_list(texts)
        scores: list[float] = []
        detail: list[dict[str, float]] = []
        for start in range(0, len(items), self.batch_size):
            chunk = items[start : start + self.batch_size]
            rows = self._predict_batch(chunk)
            if len(rows) != len(chunk):
                raise RedlatError(f"scorer {self.name!r} returned {len(rows)} rows for {len(chunk)} texts")
            for row in rows:
                values = [self._unit(v) for v in row]
                if len(values) != len(self.labels):
                    raise RedlatError(
                        f"scorer {self.name!r} returned {len(values)} scores per text, expected {len(self.labels)}"
                    )
                detail.append(dict(zip(self.labels, values, strict=True)))
                scores.append(values[self._label_index])
        return ScoreBatch(scores=scores, detail=detail)

    def __call__(self, texts: Sequence[str]) -> list[float]:
        return self.score(texts).scores

    def _unit(self, value: float) -> float:
        number = float(value)
        if not math.isfinite(number):
            raise RedlatError(f"scorer {self.name!r} produced a non-finite score ({number})")
        return min(1.0, max(0.0, number))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, label={self.label!r}, labels={self.labels!r})"
