#!/usr/bin/env python
"""The cost of running `redteam` on Ray: test cases per second in-process, with Ray and 1 worker, and with Ray and 2
workers of 1 thread each, on the offline default (SmolLM2-135M-Instruct as red LM and target, the Jigsaw BiLSTM),
all in ONE run, printed as ratios to the in-process rate. Also checks that every test case's results (test case,
reply, score) are identical across the three.

On a 2-core machine the figure is Ray's overhead, not a speed-up: the in-process run already uses both cores.

    .venv/bin/python benchmarks/bench_ray.py             # n = 64 (several minutes on 2 cores)
    .venv/bin/python benchmarks/bench_ray.py --n 16      # a quick look
    .venv/bin/python benchmarks/bench_ray.py --json      # plus one JSON line

Rates count the rounds only (`loop_seconds_this_process` in the run store: red LM, target, scorer, store), not model
loading or Ray's start; the wall time of each whole run is printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redlat.config import RaySettings, RedGeneration, RedTeamConfig
from redlat.red_team.runner import redteam
from redlat.store import RunStore


def others_busy(seconds: float = 2.0) -> float:
    """Share of the machine's CPU time used over `seconds` while this process sleeps (so by other processes), from
    /proc/stat; NaN where it cannot be read. The load average is no use here: it lags by a minute."""

    def totals() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    try:
        total0, idle0 = totals()
        time.sleep(seconds)
        total1, idle1 = totals()
    except (OSError, ValueError, IndexError):
        return float("nan")
    spent = total1 - total0
    return 1.0 - (idle1 - idle0) / spent if spent else float("nan")


def configs(n: int, batch_size: int, seed: int) -> dict[str, RedTeamConfig]:
    base = RedTeamConfig(n=n, seed=seed, device="cpu", red_generation=RedGeneration(batch_size=batch_size))
    cores = os.cpu_count() or 1
    return {
        "in-process": base,
        "ray, 1 worker": base.model_copy(update={"ray": RaySettings(enabled=True, workers=1, cpus_per_worker=cores,
                                                                    threads_per_worker=cores)}),
        "ray, 2 workers x 1 thread": base.model_copy(update={"ray": RaySettings(enabled=True, workers=2,
                                                                                cpus_per_worker=1,
                                                                                threads_per_worker=1)}),
    }


def stored(run_dir: Path) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    with RunStore(run_dir) as store:
        attempts = [(a.index, a.test_case, a.reply, a.score) for a in store.attempts()]
        return attempts, store.run_info().timings


def run_benchmark(n: int, batch_size: int, seed: int) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    reference: list[tuple[Any, ...]] | None = None
    busy_before = others_busy()
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in configs(n, batch_size, seed).items():
            print(f"running {name} ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            redteam(cfg, Path(tmp) / name.replace(" ", "_").replace(",", ""))
            wall = time.perf_counter() - start
            attempts, timings = stored(Path(tmp) / name.replace(" ", "_").replace(",", ""))
            loop = float(timings["loop_seconds_this_process"])
            reference = attempts if reference is None else reference
            rows[name] = {"test_cases": len(attempts), "loop_seconds": loop, "wall_seconds": wall,
                          "rate": len(attempts) / loop, "identical_to_in_process": attempts == reference}
    first = rows["in-process"]["rate"]
    for row in rows.values():
        row["ratio"] = row["rate"] / first
    busy_after = others_busy()
    return {"n": n, "batch_size": batch_size, "seed": seed, "cpus": os.cpu_count(), "rows": rows,
            "others_cpu_share": [busy_before, busy_after],
            "busy": bool(max(busy_before, busy_after) > 0.15)}


def format_report(report: dict[str, Any]) -> list[str]:
    lines = [f"redteam on the offline default, n = {report['n']}, red batch {report['batch_size']}, "
             f"{report['cpus']} CPUs; rates over the rounds only",
             f"{'':28} {'cases/s':>8} {'x in-proc':>9} {'rounds s':>9} {'wall s':>7}  identical"]
    for name, row in report["rows"].items():
        lines.append(f"{name:28} {row['rate']:8.3f} {row['ratio']:9.2f} {row['loop_seconds']:9.1f} "
                     f"{row['wall_seconds']:7.1f}  {'yes' if row['identical_to_in_process'] else 'NO'}")
    before, after = report["others_cpu_share"]
    lines.append(f"CPU used by other processes: {100 * before:.0f}% before the runs, {100 * after:.0f}% after"
                 + ("  WARNING: the machine was busy; the ratios are unreliable" if report["busy"] else ""))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64, help="test cases per run")
    parser.add_argument("--batch-size", type=int, default=32, help="red LM samples per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="also print the report as one JSON line")
    args = parser.parse_args(argv)
    report = run_benchmark(args.n, args.batch_size, args.seed)
    print("\n".join(format_report(report)))
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
