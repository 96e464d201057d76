"""One round of the red-team loop, for every method: propose, keep the valid new test cases, reply, score.

`play_round` is the unit the runner commits (one transaction per round) and the one the pipeline benchmark times. It
draws nothing itself: the method proposes (seeded from the run seed and the round) and the target replies with
`derive_seed(seed, round, "target")`, so a round depends only on the run seed, its number and what the store holds.
"""

from __future__ import annotations

import time
from collections.abc import Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redlat.generation import derive_seed
from redlat.records import Attempt, Sample
from redlat.red_team.method import Candidate, Method, RoundContext
from redlat.scoring.base import score_exchanges

if TYPE_CHECKING:
    from redlat.config import RedTeamConfig
    from redlat.generation import Sampler
    from redlat.red_team.runner import Components


@dataclass
class RoundResult:
    samples: list[Sample]
    attempts: list[Attempt]
    seconds: dict[str, float] = field(default_factory=dict)  # red (proposing), target, score


def play_round(
    cfg: RedTeamConfig,
    method: Method,
    parts: Components,
    red: Sampler | None,
    *,
    round_: int,
    k: int,
    first_index: int,
    n_unique: int,
    seen: Set[str],
    run_id: str,
) -> RoundResult:
    """Round `round_`: k candidates from the method, kept up to the one that completes cfg.n unique test cases;
    duplicates (of `seen` or within the round) are stored as samples but not asked again."""
    t0 = time.perf_counter()
    candidates = method.propose(RoundContext(round=round_, k=k, seed=cfg.seed, first_index=first_index, red=red))
    t1 = time.perf_counter()
    samples, new = _keep_new(candidates, round_, first_index, cfg.n - n_unique, seen)
    attempts, seconds = _answer_and_score(cfg, method, parts, round_, new, n_unique, run_id)
    return RoundResult(samples=samples, attempts=attempts, seconds={"red": t1 - t0, **seconds})


def _keep_new(
    candidates: list[Candidate], round_: int, first_index: int, wanted: int, seen: Set[str]
) -> tuple[list[Sample], list[tuple[Sample, dict[str, Any]]]]:
    samples: list[Sample] = []
    new: list[tuple[Sample, dict[str, Any]]] = []
    in_round: set[str] = set()
    for candidate in candidates:
        if len(new) >= wanted:
            break
        case = candidate.test_case
        duplicate = case is not None and (case in seen or case in in_round)
        sample = Sample(
            index=first_index + len(samples), round=round_, text=candidate.text, test_case=case, duplicate=duplicate
        )
        samples.append(sample)
        if case is not None and not duplicate:
            in_round.add(case)
            new.append((sample, candidate.origin))
    return samples, new


def _answer_and_score(
    cfg: RedTeamConfig,
    method: Method,
    parts: Components,
    round_: int,
    new: list[tuple[Sample, dict[str, Any]]],
    first_index: int,
    run_id: str,
) -> tuple[list[Attempt], dict[str, float]]:
    if not new:
        return [], {}
    cases = [sample.test_case or "" for sample, _ in new]
    origins = [origin for _, origin in new]
    t0 = time.perf_counter()
    replies = parts.chatbot.reply(cases, seed=derive_seed(cfg.seed, round_, "target"))
    t1 = time.perf_counter()
    batches = {scorer.name: score_exchanges(scorer, cases, replies, origins) for scorer in parts.scorers}
    t2 = time.perf_counter()
    deciding = batches[parts.scorers[0].name]
    attempts = [
        Attempt(
            index=first_index + i,
            run_id=run_id,
            method=method.name,
            round=round_,
            sample_index=sample.index,
            test_case=cases[i],
            reply=replies[i],
            score=float(deciding.scores[i]),
            offensive=float(deciding.scores[i]) > cfg.threshold,
            scores={name: dict(batch.detail[i]) for name, batch in batches.items()},
            origin=origin,
        )
        for i, (sample, origin) in enumerate(new)
    ]
    return attempts, {"target": t1 - t0, "score": t2 - t1}
