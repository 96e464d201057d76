"""One round of the red-team loop, for every method: propose, keep the valid new test cases, reply, score.

`play_round` is the unit the runner commits (one transaction per round) and the one the pipeline benchmark times. It
draws nothing itself: the method proposes (seeded from the run seed and the round) and the target replies with
`derive_seed(seed, round, "target")`, so a round depends only on the run seed, its number and what the store holds.

A round has three stages, also callable one by one: `propose` (the red LM's work), `keep_new` (deduplication against
the run so far: cheap, in order) and `answer_and_score` (the target's and the scorers' work). The in-process loop runs
them back to back; the Ray loop (`redlat.scale.ray_rounds`) runs the two heavy ones on workers and keeps `keep_new` and
the commits in the driver, in round order. `RoundPlan` sizes rounds and says when a run is done, from the counts
alone, for both.
"""

from __future__ import annotations

import math
import time
from collections.abc import Set
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redlat.generation import derive_seed
from redlat.records import Attempt, Sample
from redlat.red_team.method import HISTORY, Candidate, Method, RoundContext
from redlat.scoring.base import score_exchanges

if TYPE_CHECKING:
    from redlat.config import RedTeamConfig
    from redlat.engines import TextSampler as Sampler
    from redlat.red_team.runner import Components


@dataclass
class RoundResult:
    samples: list[Sample]
    attempts: list[Attempt]
    seconds: dict[str, float] = field(default_factory=dict)  # red (proposing), target, score


@dataclass
class RunCounts:
    """Where a run stands after its committed (or, in the Ray loop, deduplicated) rounds."""

    round: int
    n_samples: int
    n_unique: int
    seen: set[str]

    def advance(self, samples: list[Sample], new_cases: list[str]) -> None:
        self.round += 1
        self.n_samples += len(samples)
        self.n_unique += len(new_cases)
        self.seen.update(new_cases)


@dataclass(frozen=True)
class RoundPlan:
    """How big each round is and when the run stops, from the counts alone (so a resumed run, and a run on any number
    of Ray workers, sizes its rounds as an uninterrupted in-process one does)."""

    n: int
    batch_size: int
    sample_cap: int
    available: float = math.inf  # a finite supply of candidates (a prompt set), else infinite

    def more(self, n_samples: int, n_unique: int) -> bool:
        return n_unique < self.n and n_samples < min(self.sample_cap, self.available)

    def size(self, n_samples: int, n_unique: int) -> int:
        """A full batch, or near the end about what the yield so far says is still needed (+20%)."""
        observed_yield = n_unique / n_samples if n_samples else 0.5
        wanted = math.ceil((self.n - n_unique) / max(observed_yield, 0.05) * 1.2) + 1
        return max(1, min(self.batch_size, self.sample_cap - n_samples, wanted))

    def stop_reason(self, n_samples: int, n_unique: int) -> str:
        if n_unique >= self.n:
            return "reached_n"
        return "used_every_prompt" if n_samples >= self.available else "reached_max_samples"


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
    candidates = propose(cfg, method, red, round_=round_, k=k, first_index=first_index)
    t1 = time.perf_counter()
    samples, new = keep_new(candidates, round_, first_index, cfg.n - n_unique, seen)
    attempts, seconds = answer_and_score(cfg, method.name, parts, round_, new, n_unique, run_id)
    return RoundResult(samples=samples, attempts=attempts, seconds={"red": t1 - t0, **seconds})


def propose(
    cfg: RedTeamConfig, method: Method, red: Sampler | None, *, round_: int, k: int, first_index: int
) -> list[Candidate]:
    """The method's k candidates for round `round_` (seeded from the run seed and the round)."""
    return method.propose(RoundContext(round=round_, k=k, seed=cfg.seed, first_index=first_index, red=red))


def keep_new(
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


def answer_and_score(
    cfg: RedTeamConfig,
    method_name: str,
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
    histories = [origin.get(HISTORY, ()) for origin in origins]  # a dialogue's earlier turns, as context
    context = {"histories": histories} if any(histories) else {}  # a chatbot of one turn is asked as before
    replies = parts.chatbot.reply(cases, seed=derive_seed(cfg.seed, round_, "target"), **context)
    t1 = time.perf_counter()
    batches = {scorer.name: score_exchanges(scorer, cases, replies, origins) for scorer in parts.scorers}
    t2 = time.perf_counter()
    deciding = batches[parts.scorers[0].name]
    attempts = [
        Attempt(
            index=first_index + i,
            run_id=run_id,
            method=method_name,
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
