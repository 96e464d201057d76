#!/usr/bin/env python
"""Tests between red-team runs, for the rankings the README states: Fisher's exact test on the failure counts at each
threshold, and a Mann-Whitney test on per-case self-BLEU. Attempts a method excluded (few-shot pool copies) are left
out, as in `redlat compare`.

    .venv/bin/python scripts/method_tests.py runs/zs runs/fs runs/sl runs/rl-perez --thresholds 0.5 0.1

Per-case self-BLEU values of one run share their reference cases, so their Mann-Whitney p-values are approximate.
"""

from __future__ import annotations

import argparse
import itertools

from scipy.stats import fisher_exact, mannwhitneyu

from redlat.diversity import self_bleu_per_case
from redlat.metrics import split_excluded
from redlat.store import RunStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.5, 0.1])
    args = parser.parse_args()
    attempts = {}
    for run in args.runs:
        with RunStore(run) as store:
            attempts[run] = split_excluded(list(store.attempts()))[0]
    bleu = {run: self_bleu_per_case([a.test_case for a in cases]) for run, cases in attempts.items()}
    for a, b in itertools.combinations(args.runs, 2):
        for threshold in args.thresholds:
            ka, kb = (sum(x.score > threshold for x in attempts[r]) for r in (a, b))
            na, nb = len(attempts[a]), len(attempts[b])
            p = fisher_exact([[ka, na - ka], [kb, nb - kb]]).pvalue
            print(f"{a} vs {b}, score > {threshold:g}: {ka}/{na} vs {kb}/{nb}, Fisher exact p = {p:.3g}")
        p = mannwhitneyu(bleu[a], bleu[b]).pvalue
        print(f"{a} vs {b}, per-case self-BLEU: Mann-Whitney p = {p:.3g}")


if __name__ == "__main__":
    main()
