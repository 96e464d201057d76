#!/usr/bin/env python
"""Cost of 100 test cases per red-team method, all four measured in ONE run on the same machine, plus the cost of
self-BLEU on 10,000 cases against calling sacrebleu once per pair.

Each method runs through the public API (`redlat.redteam`) exactly as the CLI runs it, into a temporary directory:
zero-shot, then few-shot from that pool, supervised from that pool (trained on its top-scoring cases), and RL from the
supervised run for a few GRPO steps. Every row splits the wall time into loading models, training the red LM, and
the red-team loop itself (generate, reply, score, store); the ratio column is each method's total against
zero-shot's. Training cost grows with --rl-steps (the README's RL run uses 100): the per-step figure lets you scale it.

    .venv/bin/python benchmarks/bench_methods.py                 # offline default (SmolLM2 + Jigsaw), n = 100
    .venv/bin/python benchmarks/bench_methods.py --n 20 --rl-steps 2 --json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run_method(cfg: Any, run_dir: Path) -> dict[str, Any]:
    from redlat import redteam
    from redlat.store import RunStore

    start = time.perf_counter()
    result = redteam(cfg, run_dir)
    total = time.perf_counter() - start
    with RunStore(run_dir) as store:
        info = store.run_info()
        training = store.get_meta("training") or {}
    train = float(training.get("seconds", training.get("seconds_this_process", 0.0)))
    load = float(info.timings.get("load_seconds", 0.0))
    return {
        "method": cfg.method,
        "n": result.summary["n_unique"],
        "offensive_rate": result.summary["offensive_rate"],
        "total_seconds": total,
        "load_seconds": load,
        "train_seconds": train,
        "loop_seconds": float(info.timings.get("loop_seconds_this_process", 0.0)),
        "train_steps": training.get("steps"),
    }


def bleu_cost(n: int = 10_000, pairs: int = 2_000, seed: int = 0) -> dict[str, float]:
    """Batched self-BLEU on n cases, against sacrebleu per pair (timed on `pairs` pairs and scaled to n * 1000)."""
    from redlat.diversity import MAX_REFERENCES, self_bleu, sentence_bleu_reference

    rng = random.Random(seed)
    words = ["what", "why", "how", "do", "you", "is", "are", "the", "a", "my", "your", "dog", "cat", "love", "hate",
             "friend", "blue", "sky", "go", "think"]
    cases = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) + "?" for _ in range(n)]
    start = time.perf_counter()
    self_bleu(cases)
    batched = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(pairs):
        sentence_bleu_reference(rng.choice(cases), rng.choice(cases))
    per_pair = (time.perf_counter() - start) / pairs
    naive = per_pair * n * min(MAX_REFERENCES, n - 1)
    return {"cases": n, "batched_seconds": batched, "sacrebleu_per_pair_estimate_seconds": naive,
            "speedup": naive / batched}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="test cases per method")
    parser.add_argument("--rl-steps", type=int, default=5, help="GRPO steps of the RL method")
    parser.add_argument("--train-top", type=int, default=None, help="supervised: top pool cases [n / 5, min 10]")
    parser.add_argument("--red", default="smollm2-135m-instruct")
    parser.add_argument("--target", default="smollm2-135m-instruct")
    parser.add_argument("--classifier", default="jigsaw-bilstm")
    parser.add_argument("--bleu-cases", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="print JSON too")
    args = parser.parse_args(argv)

    from redlat.config import RedTeamConfig

    common = {"n": args.n, "red": args.red, "target": args.target, "classifiers": [{"name": args.classifier}],
              "device": "cpu"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="redlat-bench-methods-") as tmp:
        root = Path(tmp)
        top = args.train_top or max(10, args.n // 5)
        configs = [
            ("zs", RedTeamConfig(**common)),
            ("fs", RedTeamConfig(method="few-shot", from_run=str(root / "zs"), **common)),
            ("sl", RedTeamConfig(method="supervised", from_run=str(root / "zs"),
                                 supervised={"top": top, "min_cases": min(10, top)}, **common)),
            ("rl", RedTeamConfig(method="rl", from_run=str(root / "sl"), rl={"steps": args.rl_steps}, **common)),
        ]
        for name, cfg in configs:
            print(f"running {cfg.method} ...", file=sys.stderr, flush=True)
            rows.append(run_method(cfg, root / name))
    base = rows[0]["total_seconds"]
    print(f"\nCost of {args.n} test cases per method (red {args.red}, target {args.target}, {args.classifier}):")
    print(f"{'method':<12}{'total s':>9}{'load s':>8}{'train s':>9}{'loop s':>8}{'s / 100 cases':>15}{'vs ZS':>7}")
    for row in rows:
        per100 = row["loop_seconds"] / max(row["n"], 1) * 100
        print(f"{row['method']:<12}{row['total_seconds']:>9.1f}{row['load_seconds']:>8.1f}{row['train_seconds']:>9.1f}"
              f"{row['loop_seconds']:>8.1f}{per100:>15.1f}{row['total_seconds'] / base:>7.2f}")
    rl = rows[-1]
    if rl["train_steps"]:
        print(f"RL: {rl['train_seconds'] / rl['train_steps']:.1f} s per GRPO step ({rl['train_steps']} steps)")
    bleu = bleu_cost(args.bleu_cases)
    print(f"self-BLEU of {bleu['cases']} cases: {bleu['batched_seconds']:.1f} s batched; sacrebleu once per pair "
          f"would take ~{bleu['sacrebleu_per_pair_estimate_seconds']:.0f} s ({bleu['speedup']:.0f}x)")
    out = {"methods": rows, "self_bleu": bleu, "n": args.n, "rl_steps": args.rl_steps}
    if args.json:
        print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
