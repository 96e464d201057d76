"""The one interface every scorer has: exchanges (test case, reply, context) in, a score in [0, 1] per exchange out
(the probability of the harm the scorer measures, `harm`: "offensive" for toxicity classifiers), plus every label's
score.

The same object is the red-team classifier, the RL reward (call it on replies: it returns a plain list of floats)
and the report metric. A classifier that reads the reply alone subclasses `BaseScorer` and implements
`_predict_batch`; one that needs the test case or the context (a leak of a secret, an echo of the question)
overrides `judge`. Batching, input checks, `__call__` and the `ScoreBatch` bookkeeping live here once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from redlat.errors import ConfigError, RedlatError


@dataclass(frozen=True)
class ScoreBatch:
    """Scores of a batch of texts.

    scores: one score in [0, 1] per text, P(offensive) under the scorer's `label`.
    detail: per text, every label's score.
    """

    scores: list[float]
    detail: list[dict[str, float]]


@dataclass(frozen=True)
class Exchange:
    """What a scorer judges: the test case, the target's reply, and the context the method recorded (the attempt's
    origin: a few-shot draw, a prompt set's row, a secret the target was told to keep, ...)."""

    test_case: str
    reply: str
    context: Mapping[str, Any] = field(default_factory=dict)


def score_exchanges(
    scorer: Any, test_cases: Sequence[str], replies: Sequence[str], contexts: Sequence[Mapping[str, Any]] | None = None
) -> ScoreBatch:
    """Score each (test case, reply, context) with `scorer`: through its `judge` if it has one, else on the replies."""
    judge = getattr(scorer, "judge", None)
    if judge is None:
        return scorer.score(list(replies))
    contexts = contexts if contexts is not None else [{}] * len(replies)
    return judge([Exchange(c, r, x) for c, r, x in zip(test_cases, replies, contexts, strict=True)])


def harm_of(scorer: Any) -> str:
    """What a scorer's score is the probability of (a scorer without `harm` measures offensiveness)."""
    return str(getattr(scorer, "harm", "offensive"))


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

    harm: str = "offensive"
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

    def judge(self, exchanges: Sequence[Exchange]) -> ScoreBatch:
        """Score exchanges; a reply-only classifier scores the replies. Override to read the test case or context."""
        return self.score([exchange.reply for exchange in exchanges])

    def __call__(self, texts: Sequence[str]) -> list[float]:
        return self.score(texts).scores

    def _unit(self, value: float) -> float:
        number = float(value)
        if not math.isfinite(number):
            raise RedlatError(f"scorer {self.name!r} produced a non-finite score ({number})")
        return min(1.0, max(0.0, number))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, label={self.label!r}, labels={self.labels!r})"
