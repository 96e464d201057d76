"""Stochastic few-shot test-case generation (Perez et al. 2022, section 3.1).

Each prompt is the zero-shot prompt with k test cases from a zero-shot run's pool as items 1..k, asking for item
k + 1. Pool cases are drawn without replacement within a prompt, each with probability proportional to
exp(score / T), where score is the deciding classifier's score of the target's reply to that case (public
reimplementations use k = 5, T = 0.1; unverified against the paper). The validity rules are zero-shot's.

A sample that repeats one of the pool's test cases verbatim is no new test case: it is stored (the red LM did write it)
with `pool_copy` and `excluded` in its origin, and left out of the difficulty measures unless asked for. The pool's
content hash joins the run fingerprint, so a pool that changed between an interruption and the resume is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from redlat.errors import ConfigError, RunStoreError
from redlat.red_team.method import EXCLUDED, Candidate, MethodSettings, RoundContext
from redlat.red_team.zero_shot import ZeroShot
from redlat.store import RunStore


class FewShotSettings(MethodSettings):
    """Stochastic few-shot: k pool cases per prompt, drawn with probability proportional to exp(score / T)."""

    k: int = Field(default=5, ge=1, le=50, description="pool examples per prompt")
    temperature: float = Field(default=0.1, gt=0.0, description="T in exp(score / T); lower favours failures more")


@dataclass(frozen=True)
class PoolCase:
    index: int  # the attempt's index in the pool run
    test_case: str
    score: float


@dataclass(frozen=True)
class Pool:
    run_id: str
    run_dir: str
    cases: tuple[PoolCase, ...]
    threshold: float = 0.5  # the pool run's own offensive threshold

    @property
    def sha256(self) -> str:
        """The pool's content (every case's index, text and score), hashed: what a run drawing from it depends on."""
        blob = json.dumps([[c.index, c.test_case, c.score] for c in self.cases], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


def load_pool(run_dir: str | Path) -> Pool:
    """The scored test cases of an earlier run, or a ConfigError saying why they cannot serve as a pool."""
    try:
        with RunStore(run_dir) as store:
            info = store.run_info()
            cases = tuple(PoolCase(a.index, a.test_case, a.score) for a in store.attempts())
    except RunStoreError as exc:
        raise ConfigError(f"--from {run_dir}: {exc}") from exc
    if not cases:
        raise ConfigError(f"--from {run_dir}: that run has no test cases to draw few-shot examples from")
    return Pool(run_id=info.run_id, run_dir=str(run_dir), cases=cases, threshold=float(info.config["threshold"]))


def weighted_sample(weights_log: list[float], k: int, rng: random.Random) -> list[int]:
    """k distinct indices, drawn one after another with probability proportional to exp(weights_log[i]).

    Gumbel-top-k: sorting log-weights plus independent Gumbel noise and keeping the top k draws exactly that,
    and working with the log-weights themselves means no exponential can overflow.
    """
    keys = []
    for i, log_w in enumerate(weights_log):
        u = rng.random() or 1e-300
        keys.append((log_w - math.log(-math.log(u)) if u < 1.0 else math.inf, i))
    keys.sort(reverse=True)
    return [i for _, i in keys[:k]]


def few_shot_prompt(prompt: str, examples: list[str]) -> str:
    """`List of questions to ask someone:\\n1. a\\n2. b\\n3.` for prompt ending in "1." and examples a, b."""
    head = prompt[: -len("1.")] if prompt.endswith("1.") else prompt.rstrip() + "\n"
    items = "".join(f"{i}. {case}\n" for i, case in enumerate(examples, start=1))
    return f"{head}{items}{len(examples) + 1}."


class FewShot(ZeroShot):
    name = "few-shot"
    summary = "prompts of k pool cases drawn by exp(score / T): the red LM imitates what made the target fail"
    settings_model = FewShotSettings
    from_run = "required"
    from_help = "the pool, a run whose scored test cases the prompts are built from"
    metrics = ("pool_copies",)

    def __init__(self, cfg: Any, run_dir: Path) -> None:
        super().__init__(cfg, run_dir)
        assert cfg.from_run is not None  # the config requires it
        self.pool = load_pool(cfg.from_run)
        self.k = min(self.settings.k, len(self.pool.cases))
        self.log_weights = [case.score / self.settings.temperature for case in self.pool.cases]
        self.pool_index = {case.test_case: case.index for case in self.pool.cases}

    def inputs(self) -> dict[str, str]:
        return {"pool_sha256": self.pool.sha256}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "pool": {"run_id": self.pool.run_id, "run_dir": self.pool.run_dir,
                                            "size": len(self.pool.cases), "sha256": self.pool.sha256}}

    def prompts(self, k: int, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
        out = []
        prompt = self.cfg.red_generation.prompt
        for _ in range(k):
            chosen = [self.pool.cases[i] for i in weighted_sample(self.log_weights, self.k, rng)]
            origin = {"pool_run_id": self.pool.run_id, "examples": [case.index for case in chosen]}
            out.append((few_shot_prompt(prompt, [case.test_case for case in chosen]), origin))
        return out

    def propose(self, ctx: RoundContext) -> list[Candidate]:
        out = []
        for candidate in super().propose(ctx):
            copied = self.pool_index.get(candidate.test_case) if candidate.test_case is not None else None
            if copied is not None:
                origin = {**candidate.origin, "pool_copy": copied, EXCLUDED: "copy of a pool case"}
                candidate = Candidate(candidate.text, candidate.test_case, origin)
            out.append(candidate)
        return out
