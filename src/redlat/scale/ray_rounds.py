"""`redlat redteam --ray`: the heavy stages of each round on Ray actors, the run store in the driver.

Each worker is a Ray actor holding one copy of the run's models (red LM, target, scorers), loaded once. It serves the
two heavy stages of a round (red_team/rounds.py): `propose` (the red LM's candidates) and `answer` (the target's
replies and the scores). The driver keeps the cheap, order-dependent stage, `keep_new` (deduplication against the
run so far), and commits rounds to the store in round order, so the store, resume, summary and report are unchanged.

Why the result is the same on any cluster: a round's candidates depend only on (run seed, round, its size, where it
starts in the sample stream) and its replies only on (run seed, round, its new test cases), never on which worker ran
it. The driver proposes ahead: while round r is being answered, rounds r+1, r+2, ... are proposed with the size and
start the counts so far predict (a full batch, except near the end). When round r+1's turn comes and the exact counts
say otherwise, its proposal is discarded and asked again, so speculation costs time, never a different attempt.

Faults are Ray's to handle: a worker that dies is restarted (loading its models again) and its unfinished call
retried (`max_restarts`); the call is deterministic, so a retry returns what the first try would have, and nothing is
committed twice because only the driver commits. A driver killed mid-run resumes like any run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redlat.errors import ConfigError
from redlat.red_team.rounds import RoundPlan, RoundResult, RunCounts, keep_new
from redlat.scale.ray_cluster import actor_options, check_fits, connected, worker_errors

if TYPE_CHECKING:
    from redlat.config import RedTeamConfig
    from redlat.records import Sample
    from redlat.red_team.method import Candidate, Method

log = logging.getLogger(__name__)


class RoundWorker:
    """The state of one Ray actor: the run's models, loaded once, serving `propose` and `answer` calls."""

    def __init__(self, cfg: RedTeamConfig, method: Method, threads: int) -> None:
        import torch

        from redlat.cli_support import hide_loading_bars
        from redlat.red_team.runner import load_components, red_sampler

        torch.set_num_threads(threads)
        hide_loading_bars()
        self.cfg = cfg
        self.method = method
        self.parts = load_components(cfg, method)
        self.red = red_sampler(cfg, self.parts.red) if self.parts.red is not None else None

    def describe(self) -> dict[str, Any]:
        from redlat.red_team.runner import describe_components

        return {**describe_components(self.cfg, self.parts), "host": socket.gethostname(), "pid": os.getpid()}

    def propose(self, round_: int, k: int, first_index: int) -> tuple[list[Candidate], float]:
        from redlat.red_team.rounds import propose

        start = time.perf_counter()
        candidates = propose(self.cfg, self.method, self.red, round_=round_, k=k, first_index=first_index)
        return candidates, time.perf_counter() - start

    def answer(
        self, round_: int, new: list[tuple[Sample, dict[str, Any]]], first_index: int, run_id: str
    ) -> tuple[list[Any], dict[str, float]]:
        from redlat.red_team.rounds import answer_and_score

        return answer_and_score(self.cfg, self.method.name, self.parts, round_, new, first_index, run_id)


@dataclass
class _Proposal:
    spec: tuple[int, int]  # (k, first_index) it was asked with
    ref: Any


@dataclass
class _Answering:
    samples: list[Sample]
    ref: Any
    red_seconds: float


class RayWorkers:
    """Started by `ray_workers`; plays a run's rounds on its actors (`rounds`)."""

    def __init__(self, ray: Any, actors: list[Any], cfg: RedTeamConfig, described: list[dict[str, Any]],
                 cluster: dict[str, Any]) -> None:
        self.ray = ray
        self.actors = actors
        self.cfg = cfg
        self.described = described
        self.cluster = cluster
        self._load: dict[int, int] = dict.fromkeys(range(len(actors)), 0)
        self._owner: dict[Any, int] = {}

    def describe(self) -> dict[str, Any]:
        """What the first worker loaded (models and resolved generation settings), as the run's provenance has it."""
        first = self.described[0]
        return {"models": first["models"], "generation": first["generation"]}

    def execution(self) -> dict[str, Any]:
        settings = self.cfg.ray
        return {
            "kind": "ray",
            "workers": len(self.actors),
            "cpus_per_worker": settings.cpus_per_worker,
            "gpus_per_worker": settings.gpus_per_worker,
            "threads_per_worker": settings.threads,
            "hosts": sorted({d["host"] for d in self.described}),
            "cluster": self.cluster,
        }

    # -- dispatch -------------------------------------------------------------------------------------------------

    def _submit(self, call: str, *args: Any) -> Any:
        index = min(self._load, key=lambda i: (self._load[i], i))
        ref = getattr(self.actors[index], call).remote(*args)
        self._load[index] += 1
        self._owner[ref] = index
        return ref

    def _release(self, ref: Any) -> None:
        """The call is over (answered or dropped): its worker has one call less."""
        index = self._owner.pop(ref, None)
        if index is not None:
            self._load[index] -= 1

    def _get(self, ref: Any) -> Any:
        try:
            with worker_errors():
                return self.ray.get(ref)
        finally:
            self._release(ref)

    def _drop(self, ref: Any) -> None:
        with contextlib.suppress(Exception):
            self.ray.cancel(ref)
        self._release(ref)

    def _ready(self, ref: Any) -> bool:
        ready, _ = self.ray.wait([ref], timeout=0)
        return bool(ready)

    # -- the round pipeline ---------------------------------------------------------------------------------------

    def rounds(self, plan: RoundPlan, counts: RunCounts, run_id: str) -> Iterator[RoundResult]:
        """The run's remaining rounds, in order, each exactly as the in-process loop would play it."""
        proposals: dict[int, _Proposal] = {}
        answering: dict[int, _Answering] = {}
        done: dict[int, RoundResult] = {}
        next_commit = counts.round
        depth = len(self.actors) + 1  # proposals ahead of the deduplication frontier
        try:
            while True:
                self._propose_ahead(plan, counts, proposals, depth)
                while self._dedup_next(plan, counts, proposals, answering, done, run_id):
                    self._propose_ahead(plan, counts, proposals, depth)
                for round_ in [r for r, a in answering.items() if self._ready(a.ref)]:
                    item = answering.pop(round_)
                    attempts, seconds = self._get(item.ref)
                    done[round_] = RoundResult(item.samples, attempts, {"red": item.red_seconds, **seconds})
                while next_commit in done:
                    yield done.pop(next_commit)
                    next_commit += 1
                if not plan.more(counts.n_samples, counts.n_unique) and next_commit == counts.round:
                    return
                # Wait for what lets the run move on: the next round's proposal, or any answer. (A proposal further
                # ahead that is back already cannot be used before that one, so it must not end the wait.)
                pending = [a.ref for a in answering.values()]
                if counts.round in proposals:
                    pending.append(proposals[counts.round].ref)
                if pending:
                    self.ray.wait(pending, num_returns=1)
        finally:
            for proposal in proposals.values():
                self._drop(proposal.ref)
            for item in answering.values():
                self._drop(item.ref)

    def _propose_ahead(
        self, plan: RoundPlan, counts: RunCounts, proposals: dict[int, _Proposal], depth: int
    ) -> None:
        """Proposals for the next `depth` rounds: the first with its exact size and start, the rest as predicted
        (each earlier round keeps all its candidates, the yield so far holds). A wrong prediction is redone later."""
        n_samples, n_unique = counts.n_samples, float(counts.n_unique)
        observed_yield = counts.n_unique / counts.n_samples if counts.n_samples else 0.5
        round_ = counts.round
        for ahead in range(depth):
            if not plan.more(n_samples, int(n_unique)):
                break
            spec = (plan.size(n_samples, int(n_unique)), n_samples)
            current = proposals.get(round_)
            if current is None or (ahead == 0 and current.spec != spec):
                if current is not None:
                    log.debug("round %d was proposed as %s, is %s: proposing again", round_, current.spec, spec)
                    self._drop(current.ref)
                proposals[round_] = _Proposal(spec, self._submit("propose", round_, *spec))
            k = proposals[round_].spec[0]
            n_samples += k
            n_unique += k * observed_yield
            round_ += 1
        for stale in [r for r in proposals if r >= round_ and not plan.more(n_samples, int(n_unique))]:
            self._drop(proposals.pop(stale).ref)

    def _dedup_next(
        self,
        plan: RoundPlan,
        counts: RunCounts,
        proposals: dict[int, _Proposal],
        answering: dict[int, _Answering],
        done: dict[int, RoundResult],
        run_id: str,
    ) -> bool:
        """Deduplicate the next round if its (exactly specified) proposal is back; True if it was."""
        round_ = counts.round
        proposal = proposals.get(round_)
        if proposal is None or not plan.more(counts.n_samples, counts.n_unique):
            return False
        if proposal.spec != (plan.size(counts.n_samples, counts.n_unique), counts.n_samples):
            return False  # _propose_ahead asks again
        if not self._ready(proposal.ref):
            return False
        del proposals[round_]
        candidates, red_seconds = self._get(proposal.ref)
        samples, new = keep_new(candidates, round_, counts.n_samples, self.cfg.n - counts.n_unique, counts.seen)
        first_attempt = counts.n_unique
        counts.advance(samples, [sample.test_case or "" for sample, _ in new])
        if new:
            answering[round_] = _Answering(samples, self._submit("answer", round_, new, first_attempt, run_id),
                                           red_seconds)
        else:
            done[round_] = RoundResult(samples, [], {"red": red_seconds})
        return True


@contextlib.contextmanager
def ray_workers(cfg: RedTeamConfig, method: Method) -> Iterator[RayWorkers]:
    """Ray connected (or started), `cfg.ray.workers` actors with their models loaded, removed afterwards."""
    settings = cfg.ray
    with connected(settings) as cluster:
        check_fits(cluster, settings)
        ray = __import__("ray")
        remote = ray.remote(**actor_options(settings))(RoundWorker)
        actors = [remote.remote(cfg, method, settings.threads) for _ in range(settings.workers)]
        try:
            described = _wait_loaded(ray, actors, settings.start_timeout)
            yield RayWorkers(ray, actors, cfg, described, cluster.describe())
        finally:
            for actor in actors:
                with contextlib.suppress(Exception):
                    ray.kill(actor, no_restart=True)


def _wait_loaded(ray: Any, actors: list[Any], timeout: float) -> list[dict[str, Any]]:
    from ray.exceptions import GetTimeoutError

    refs = [actor.describe.remote() for actor in actors]
    try:
        with worker_errors():
            return list(ray.get(refs, timeout=timeout))
    except GetTimeoutError as exc:
        raise ConfigError(
            f"the Ray workers did not load their models within {timeout:g} s (ray.start_timeout); is the cluster "
            "busy, or are the models missing on its nodes (run `redlat prepare` on each)?"
        ) from exc
