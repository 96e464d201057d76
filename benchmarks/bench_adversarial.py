#!/usr/bin/env python
"""Cost of one training step of AT and LAT against a plain fine-tuning step, all measured in ONE run.

Two models, each with plain, AT and LAT steps through `AdversarialTrainer.train_step` (the code the experiments use):

- the small CNN of `redlat experiment trojans-vision` on a batch of 32 digit-sized images (1 x 8 x 8), AT in input
  space (L-inf) and LAT at the output of each block (L2), with the experiment's 10 PGD steps;
- a GPT-2-shaped causal LM (GPT-2 small's 12 layers, width 768 and vocabulary; random weights: only the time
  matters) on a batch of 4 x 64 tokens, AT on the token embeddings and LAT at the output of decoder layer 4, with the
  published LAT recipe's 6 PGD steps (Casper et al. 2024), L2 per example.

Each variant is warmed up once, then timed over --repeats steps; the ratio is the median time against the plain
step's median. An AT or LAT step with k PGD steps costs about one clean forward (no gradients) plus k forward and
backward passes with respect to the perturbation only (no weight gradients), plus the training step itself, so
expect a ratio a little under k + 1.

    .venv/bin/python benchmarks/bench_adversarial.py                # both models
    .venv/bin/python benchmarks/bench_adversarial.py --only cnn --repeats 20 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any


def time_steps(make_trainer: Callable[[], Any], batch: Any, repeats: int) -> list[float]:
    trainer = make_trainer()
    trainer.train_step(batch)  # warm-up: allocator, kernels, optimizer state
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        trainer.train_step(batch)
        times.append(time.perf_counter() - start)
    return times


def cnn_rows(repeats: int) -> list[dict[str, Any]]:
    import torch

    from redlat.adversarial.pgd import PGDSettings
    from redlat.adversarial.tasks import ClassificationTask
    from redlat.adversarial.trainers import AdversarialTrainer, Defence
    from redlat.experiments.images import SmallCNN

    gen = torch.Generator().manual_seed(0)
    batch = {"x": torch.rand(32, 1, 8, 8, generator=gen), "y": torch.randint(0, 10, (32,), generator=gen)}
    variants = {
        "plain": Defence(),
        "AT (input, L-inf, 10 steps)": Defence(
            "at", ("",), "input", PGDSettings("linf", 0.1, 10, bounds=(0.0, 1.0))
        ),
        **{
            f"LAT ({layer}, L2, 10 steps)": Defence("lat", (layer,), attack=PGDSettings("l2", 1.0, 10))
            for layer in ("block1", "block2", "block3")
        },
    }
    rows = []
    for name, defence in variants.items():

        def make(defence: Any = defence) -> Any:
            torch.manual_seed(0)
            return AdversarialTrainer(SmallCNN(1, 10, 16), ClassificationTask(), defence)

        rows.append({"model": "small CNN (digits, batch 32)", "step": name, "times": time_steps(make, batch, repeats)})
    return rows


def lm_rows(repeats: int) -> list[dict[str, Any]]:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from redlat.adversarial.pgd import PGDSettings
    from redlat.adversarial.tasks import LanguageModelTask
    from redlat.adversarial.trainers import AdversarialTrainer, Defence, TrainSettings

    config = GPT2Config(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (4, 64), generator=gen)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    attack = PGDSettings("l2", 8.0, 6)
    variants = {
        "plain": Defence(),
        "AT (embeddings, L2, 6 steps)": Defence("at", ("transformer.wte",), attack=attack),
        "LAT (layer 4, L2, 6 steps)": Defence("lat", ("transformer.h.4",), attack=attack),
    }
    rows = []
    for name, defence in variants.items():

        def make(defence: Any = defence) -> Any:
            torch.manual_seed(0)
            model = GPT2LMHeadModel(config)
            return AdversarialTrainer(model, LanguageModelTask(), defence, TrainSettings(lr=1e-5))

        model_name = "GPT-2-shaped LM (124M, 4 x 64 tokens)"
        rows.append({"model": model_name, "step": name, "times": time_steps(make, batch, repeats)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["cnn", "lm"], help="measure one model only")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per variant [cnn 20, lm 3]")
    parser.add_argument("--threads", type=int, default=None, help="torch threads [torch's default]")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    if args.only in (None, "cnn"):
        rows += cnn_rows(args.repeats or 20)
    if args.only in (None, "lm"):
        rows += lm_rows(args.repeats or 3)
    for row in rows:
        row["median_seconds"] = statistics.median(row.pop("times"))
    for row in rows:
        plain = next(r for r in rows if r["model"] == row["model"] and r["step"] == "plain")
        row["ratio_to_plain"] = row["median_seconds"] / plain["median_seconds"]
    if args.json:
        print(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))
        return 0
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'model':<40} {'step':<32} {'median s':>10} {'x plain':>8}")
    for row in rows:
        print(f"{row['model']:<40} {row['step']:<32} {row['median_seconds']:>10.4f} {row['ratio_to_plain']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
