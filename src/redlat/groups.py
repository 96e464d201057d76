"""Failure rates by group of people (Perez et al. 2022, section 6: distributional bias), and whether they differ.

Attempts that carry a `group` in their origin (the `groups` method's) are counted per group: failures, the rate and
its 95% Wilson interval. Whether the rates differ is Pearson's chi-square test of homogeneity on the groups x
(failed, passed) table (scipy); when expected counts fall below 5 (few failures: the usual case), its p-value comes
from a permutation test of the same statistic instead of the chi-square distribution. `summary`, the report and
`compare` (through the run metrics) read these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from redlat.records import Attempt

GROUP_KEY = "group"


@dataclass(frozen=True)
class GroupRate:
    group: str
    n: int
    failures: int
    rate: float
    low: float
    high: float


def group_rates(attempts: Sequence[Attempt], threshold: float, key: str = GROUP_KEY) -> list[GroupRate]:
    """One row per group, in the order groups first appear among the attempts (attempts without the key: none)."""
    from redlat.summary import wilson_interval

    counts: dict[str, list[int]] = {}
    for attempt in attempts:
        group = attempt.origin.get(key)
        if group is None:
            continue
        row = counts.setdefault(str(group), [0, 0])
        row[0] += 1
        row[1] += attempt.score > threshold
    rows = []
    for group, (n, failures) in counts.items():
        low, high = wilson_interval(failures, n)
        rows.append(GroupRate(group, n, failures, failures / n, low, high))
    return rows


PERMUTATIONS = 9999


def rates_differ(rows: Sequence[GroupRate]) -> dict[str, Any]:
    """Chi-square test of homogeneity of the groups' failure rates: statistic, degrees of freedom, p-value, and the
    number of cells whose expected count is below 5. With such cells the chi-square distribution is a poor guide, so
    p comes from SciPy's permutation test of the same statistic (9,999 seeded resamples: the same run, the same p);
    `p_asymptotic` keeps the chi-square one. p is 1 when every group's rate is the same (all 0, all 1)."""
    import numpy as np
    from scipy.stats import PermutationMethod, chi2_contingency

    if len(rows) < 2:
        return {"test": "chi-square", "statistic": None, "dof": 0, "p": None, "p_asymptotic": None,
                "small_cells": 0, "method": None}
    table = np.array([[r.failures, r.n - r.failures] for r in rows], dtype=int)  # counts: the permutation test
    if (table.sum(axis=0) == 0).any():  # no failure at all, or nothing passed: no difference to find
        return {"test": "chi-square", "statistic": 0.0, "dof": len(rows) - 1, "p": 1.0, "p_asymptotic": 1.0,
                "small_cells": 0, "method": "no variation"}
    result = chi2_contingency(table, correction=False)
    small = int((result.expected_freq < 5).sum())
    p, method = float(result.pvalue), "asymptotic"
    if small:
        resampled = chi2_contingency(table, correction=False, method=PermutationMethod(
            n_resamples=PERMUTATIONS, rng=np.random.default_rng(0)))
        p, method = float(resampled.pvalue), f"permutation ({PERMUTATIONS} resamples)"
    return {"test": "chi-square", "statistic": float(result.statistic), "dof": int(result.dof), "p": p,
            "p_asymptotic": float(result.pvalue), "small_cells": small, "method": method}


def group_summary(attempts: Sequence[Attempt], threshold: float) -> dict[str, Any] | None:
    """The rates by group and the test, JSON-able; None when no attempt names a group."""
    rows = group_rates(attempts, threshold)
    if not rows:
        return None
    return {"rows": [asdict(r) for r in rows], "test": rates_differ(rows)}
