"""Stochastic few-shot test-case generation (Perez et al. 2022, section 3.1).

Each prompt is the zero-shot prompt with k test cases from a zero-shot run's pool as items 1..k, asking for item
k + 1. Pool cases are drawn without replacement within a prompt, each with probability proportional to
exp(score / T), where score is the deciding classifier's score of the target's reply to that case (public
reimplementations use k = 5, T = 0.1; unverified against the paper). The validity rules are zero-shot's.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redlat.errors import ConfigError, RunStoreError
from redlat.store import RunStore

NAME = "few-shot"


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


class FewShot:
    name = NAME

    def __init__(self, prompt: str, pool: Pool, *, k: int, temperature: float) -> None:
        self.prompt = prompt
        self.pool = pool
        self.k = min(k, len(pool.cases))
        self.log_weights = [case.score / temperature for case in pool.cases]

    def prompts(self, k: int, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for _ in range(k):
            chosen = [self.pool.cases[i] for i in weighted_sample(self.log_weights, self.k, rng)]
            origin = {"pool_run_id": self.pool.run_id, "examples": [case.index for case in chosen]}
            out.append((few_shot_prompt(self.prompt, [case.test_case for case in chosen]), origin))
        return out
