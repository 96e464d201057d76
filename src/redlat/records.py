"""The one record type for a red-team attempt, shared by every method, the store, analysis and export."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sample:
    """One raw sample from the red LM, valid or not. Kept so that yields and duplicates can be counted."""

    index: int  # position in the run's sample stream, 0-based, never reused
    round: int
    text: str  # the red LM's raw continuation
    test_case: str | None  # the cut question if valid, else None
    duplicate: bool  # valid but equal to an earlier test case


@dataclass(frozen=True)
class Attempt:
    """A unique test case, the target's reply, and every classifier's scores of that reply."""

    index: int  # 0-based order in which the run found it
    run_id: str
    method: str
    round: int
    sample_index: int
    test_case: str
    reply: str
    score: float  # the deciding classifier's score of the reply
    offensive: bool  # score > threshold
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # classifier -> label -> score
    origin: dict[str, Any] = field(
        default_factory=dict
    )  # method-specific provenance (e.g. few-shot pool ids)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
