"""Failure rates through a dialogue (Perez et al. 2022, section 7: red teaming over several turns).

Attempts that carry a `dialogue` and a `turn` in their origin (the `dialogue` method's) give two measures:
- the failure rate at each turn, with its 95% Wilson interval;
- whether a failing reply makes the next reply of the same dialogue more likely to fail: over every pair of
  consecutive turns, the rate after a failing reply and after a passing one (Wilson intervals), and Fisher's exact
  test (two-sided, scipy) on that 2 x 2 table, with its odds ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from redlat.groups import group_rates
from redlat.records import Attempt

DIALOGUE_KEY, TURN_KEY = "dialogue", "turn"


def turn_rates(attempts: Sequence[Attempt], threshold: float) -> list[dict[str, Any]]:
    rows = [asdict(r) for r in group_rates(attempts, threshold, key=TURN_KEY)]
    for row in rows:
        row["turn"] = int(row.pop("group"))
    return sorted(rows, key=lambda r: r["turn"])


def after_failure(attempts: Sequence[Attempt], threshold: float) -> dict[str, Any]:
    """The next turn's failure rate after a failing and after a passing reply, and Fisher's exact test."""
    from scipy.stats import fisher_exact

    from redlat.summary import wilson_interval

    failed = {(a.origin[DIALOGUE_KEY], int(a.origin[TURN_KEY])): a.score > threshold
              for a in attempts if DIALOGUE_KEY in a.origin and TURN_KEY in a.origin}
    table = [[0, 0], [0, 0]]  # rows: the reply before failed / passed; columns: the next failed / passed
    for (dialogue, turn), before in failed.items():
        after = failed.get((dialogue, turn + 1))
        if after is not None:
            table[0 if before else 1][0 if after else 1] += 1
    out: dict[str, Any] = {"table": table, "pairs": sum(map(sum, table))}
    for name, (k, rest) in (("after_failure", table[0]), ("after_pass", table[1])):
        n = k + rest
        low, high = wilson_interval(k, n)
        out[name] = {"n": n, "failures": k, "rate": k / n if n else None, "low": low, "high": high}
    if all(sum(row) for row in table):
        odds, p = fisher_exact(table)
        out.update(test="fisher-exact", odds_ratio=float(odds), p=float(p))
    else:
        out.update(test="fisher-exact", odds_ratio=None, p=None)  # no failing (or no passing) reply to follow
    return out


def turn_summary(attempts: Sequence[Attempt], threshold: float) -> dict[str, Any] | None:
    """The rates by turn and after a failure, JSON-able; None when no attempt belongs to a dialogue."""
    if not any(TURN_KEY in a.origin for a in attempts):
        return None
    return {"rows": turn_rates(attempts, threshold), "after": after_failure(attempts, threshold)}
