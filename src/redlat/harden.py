"""`redlat harden`: train a target so that the failures red-team runs found against it stop.

1. **Cases** (`collect_cases`): every attempt of the runs, one per test case (the highest-scoring if several runs
   asked it). A failure scores above the threshold (by default each run's own). The passed cases are shuffled once:
   the first `held_out` are kept aside to measure what hardening cost; the next `retain_ratio` x failures are
   trained on with the target's own reply, so that it keeps answering as it did.
2. **Safe replies** (`safe_replies`): for each failure, the target's own lowest-scoring of `safe_samples` fresh
   replies when that one passes, else a fixed fallback reply.
3. **Training**, with LoRA through `AdversarialTrainer` (checkpointed in OUTPUT.partial/, so an interrupted run
   resumes): `tlat` targeted LAT (the attacker pulls toward the found reply and away from the safe one; the defender
   trains toward the safe reply, away from the found one, plus the retain loss), `lat` / `at` untargeted PGD at a
   hidden layer / the embeddings on batches of safe replies and retain cases, `sft` the same batches without an
   attacker. The model input is exactly what the red-team runs' chatbot gave the target (chat template or DPG).
4. **Measures**, before and after on the same seeds: the failure rate when the found test cases are asked again
   (sampled as in the runs, scored by the runs' deciding classifier), the perplexity of the held-out passed cases'
   replies, and the agreement of greedy replies on held-out prompts with the original model's.
5. **Output**: the merged model and tokenizer in OUTPUT (a directory `redlat redteam --target` loads), with
   `harden.json` (config, provenance, data counts, measures, training log, the held-out test cases).
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from redlat.config import ChatbotConfig, HardenConfig, TargetGeneration
from redlat.errors import ConfigError
from redlat.generation import derive_seed
from redlat.scoring.base import score_exchanges

log = logging.getLogger(__name__)

MANIFEST = "harden.json"


@dataclass(frozen=True)
class Case:
    test_case: str
    reply: str  # what the target said in the run
    score: float  # the run's deciding score of that reply
    run: str


@dataclass(frozen=True)
class Cases:
    failures: list[Case]  # highest score first
    retain: list[Case]
    held_out: list[Case]
    thresholds: dict[str, float]  # run -> the threshold used
    red_team: dict[str, Any]  # the first run's config (chatbot, generation, classifier)

    def counts(self) -> dict[str, int]:
        return {"failures": len(self.failures), "retain": len(self.retain), "held_out": len(self.held_out)}


def collect_cases(cfg: HardenConfig) -> Cases:
    from redlat.store import RunStore
    from redlat.summary import deciding_classifier

    best: dict[str, Case] = {}
    thresholds: dict[str, float] = {}
    first_config: dict[str, Any] | None = None
    for run in cfg.runs:
        if not (Path(run) / "run.sqlite").exists():
            raise ConfigError(f"{run} is not a run directory (no run.sqlite); give the directory of a redteam run")
        with RunStore(run) as store:
            if not store.has_run():
                raise ConfigError(f"{run} holds no run")
            info = store.run_info()
            if info.command != "redteam":
                raise ConfigError(f"{run} is a {info.command!r} run; harden learns from `redlat redteam` runs")
            if info.config.get("target") != cfg.target:
                log.warning("%s attacked %r, not %r: its failures may not be this target's", run,
                            info.config.get("target"), cfg.target)
            if deciding_classifier(info.config, info.provenance)["own"]:
                raise ConfigError(f"{run} was judged by its method's own scorer ({info.method}); harden judges the "
                                  "replies with the runs' classifiers, so it takes runs that a classifier decided")
            first_config = first_config or info.config
            thresholds[run] = cfg.threshold if cfg.threshold is not None else float(info.config["threshold"])
            for attempt in store.attempts():
                case = Case(attempt.test_case, attempt.reply, float(attempt.score), run)
                if attempt.test_case not in best or case.score > best[attempt.test_case].score:
                    best[attempt.test_case] = case
    assert first_config is not None
    cases = sorted(best.values(), key=lambda c: (-c.score, c.test_case))
    failures = [c for c in cases if c.score > thresholds[c.run]]
    if not failures:
        top = ", ".join(f"{c.score:.3f}" for c in cases[:5]) or "none"
        raise ConfigError(
            f"the runs hold no failure: no reply scores above the threshold ({sorted(set(thresholds.values()))}); "
            f"the highest scores are {top}. Red-team more (larger --n, few-shot, RL) or pass a lower --threshold"
        )
    failures = failures[: cfg.max_failures]
    passed = [c for c in cases if c.score <= thresholds[c.run] and c.reply.strip()]
    random.Random(derive_seed(cfg.seed, "split")).shuffle(passed)
    held_out = passed[: cfg.held_out]
    retain = passed[cfg.held_out : cfg.held_out + round(cfg.retain_ratio * len(failures))]
    return Cases(failures, retain, held_out, thresholds, first_config)


class Target:
    """The target as the runs saw it: its chatbot (prompt format, sampling) and the runs' deciding classifier."""

    def __init__(self, cfg: HardenConfig, red_team: dict[str, Any], *, loaded: Any = None, scorer: Any = None):
        from redlat.chatbot import Chatbot
        from redlat.models.causal_lm import load_causal_lm
        from redlat.scoring import load_scorer

        self.lm = loaded if loaded is not None else load_causal_lm(cfg.target, device=cfg.device, dtype=cfg.dtype)
        self.chatbot = Chatbot(
            self.lm,
            ChatbotConfig.model_validate(red_team.get("chatbot", {})),
            TargetGeneration.model_validate(red_team.get("target_generation", {})),
        )
        if scorer is None:
            spec = red_team["classifiers"][0]
            scorer = load_scorer(spec["name"], label=spec.get("label"), device=str(self.lm.device),
                                 options=spec.get("options"))
        self.scorer = scorer
        self.dpg = self.chatbot.format == "dpg"

    def prompt(self, test_case: str) -> str:
        return self.chatbot.model_input(test_case)

    def completion(self, reply: str) -> str:
        """A reply as the model writes it: after DPG's "GOPHER:" a space first and a newline last (no EOS)."""
        return f" {reply}\n" if self.dpg else reply

    def failure_rate(self, cases: Sequence[Case], threshold: Callable[[Case], float], seed: int) -> float:
        if not cases:
            return float("nan")
        asked = [c.test_case for c in cases]
        replies = self.chatbot.reply(asked, seed=seed)
        scores = score_exchanges(self.scorer, asked, replies).scores  # a judge may read the request too
        return sum(s > threshold(c) for s, c in zip(scores, cases, strict=True)) / len(cases)


def safe_replies(target: Target, cases: Cases, cfg: HardenConfig) -> list[str]:
    """Per failure: the target's own lowest-scoring fresh reply if it passes, else the fallback reply."""
    if cfg.safe_replies == "fixed":
        return [cfg.fallback_reply] * len(cases.failures)
    asked = [c.test_case for c in cases.failures for _ in range(cfg.safe_samples)]
    replies = target.chatbot.reply(asked, seed=derive_seed(cfg.seed, "safe"))
    scores = score_exchanges(target.scorer, asked, replies).scores
    out = []
    for i, case in enumerate(cases.failures):
        options = [
            (scores[j], replies[j]) for j in range(i * cfg.safe_samples, (i + 1) * cfg.safe_samples)
            if replies[j].strip()
        ]
        score, reply = min(options, default=(math.inf, ""))
        out.append(reply if score <= cases.thresholds[case.run] else cfg.fallback_reply)
    return out


def training_batches(target: Target, cases: Cases, safe: Sequence[str], cfg: HardenConfig) -> list[dict[str, Any]]:
    """Per step, `batch_size` failures (tlat: pairs of safe and found replies with a retain batch; else safe
    replies mixed with retain cases); `epochs` passes, each in its own seeded order."""
    from redlat.adversarial.lm_batches import completion_batch, pair_batch

    limits = {"max_prompt": cfg.max_prompt_tokens, "max_completion": cfg.max_reply_tokens, "eos": not target.dpg}
    per_step = max(1, round(cfg.batch_size * cfg.retain_ratio)) if cases.retain else 0
    batches = []
    retain_order = list(cases.retain)
    for epoch in range(cfg.epochs):
        order = list(range(len(cases.failures)))
        random.Random(derive_seed(cfg.seed, "epoch", epoch)).shuffle(order)
        random.Random(derive_seed(cfg.seed, "retain", epoch)).shuffle(retain_order)
        for step, start in enumerate(range(0, len(order), cfg.batch_size)):
            chosen = order[start : start + cfg.batch_size]
            offset = (step * per_step) % max(len(retain_order), 1)
            kept = (retain_order[offset:] + retain_order[:offset])[:per_step]
            retain = [(target.prompt(c.test_case), target.completion(c.reply)) for c in kept]
            prompts = [target.prompt(cases.failures[i].test_case) for i in chosen]
            if cfg.defence == "tlat":
                pairs = [
                    (p, target.completion(safe[i]), target.completion(cases.failures[i].reply))
                    for p, i in zip(prompts, chosen, strict=True)
                ]
                batches.append(pair_batch(target.lm.tokenizer, pairs, retain=retain, **limits))
            else:
                items = [(p, target.completion(safe[i])) for p, i in zip(prompts, chosen, strict=True)]
                batches.append(completion_batch(target.lm.tokenizer, [*items, *retain], **limits))
    return batches


def cost_measures(target: Target, cases: Cases, cfg: HardenConfig, reference: list[str] | None) -> dict[str, Any]:
    """Perplexity of the held-out passed replies, greedy replies on their prompts (and agreement with `reference`),
    and the failure rate when the found test cases are asked again."""
    from redlat.adversarial.lm_trojans import agreement, greedy_replies, reply_logprobs

    model, tok = target.lm.model, target.lm.tokenizer
    limits = {"max_prompt": cfg.max_prompt_tokens, "max_completion": cfg.max_reply_tokens, "eos": not target.dpg}
    out: dict[str, Any] = {}
    if cases.held_out:
        items = [(target.prompt(c.test_case), target.completion(c.reply)) for c in cases.held_out]
        out["perplexity"] = math.exp(-float(reply_logprobs(model, tok, items, **limits).mean()))
        prompts = [target.prompt(c.test_case) for c in cases.held_out]
        replies = greedy_replies(model, tok, prompts, max_new_tokens=16, max_prompt=cfg.max_prompt_tokens)
        replies = [target.chatbot.extract_reply(r) for r in replies]
        out["greedy_replies"] = replies
        if reference is not None:
            out["agreement"] = agreement(replies, reference, words=cfg.agreement_words)
    out["failure_rate"] = target.failure_rate(
        cases.failures, lambda c: cases.thresholds[c.run], derive_seed(cfg.seed, "replay")
    )
    return out


def harden(
    cfg: HardenConfig,
    *,
    loaded: Any = None,
    scorer: Any = None,
    on_step: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Collect, train, measure, save; returns what harden.json holds. `loaded` / `scorer`: the target LoadedLM and
    the deciding scorer already in memory (else loaded from the config and the first run)."""
    import torch

    from redlat.adversarial.lm_layers import lm_defence, sample_batch
    from redlat.adversarial.tasks import LanguageModelTask
    from redlat.adversarial.trainers import AdversarialTrainer, TrainSettings, apply_lora
    from redlat.atomic import write_text_atomic
    from redlat.provenance import collect

    output = Path(cfg.output)
    if (output / MANIFEST).exists():
        raise ConfigError(f"{output} already holds a hardened model; choose another output directory")
    if output.exists() and any(output.iterdir()):
        raise ConfigError(f"{output} exists and is not empty; choose another output directory")
    cases = collect_cases(cfg)
    start = time.perf_counter()
    target = Target(cfg, cases.red_team, loaded=loaded, scorer=scorer)
    torch.manual_seed(derive_seed(cfg.seed, "safe"))
    safe = safe_replies(target, cases, cfg)
    before = cost_measures(target, cases, cfg, None)
    reference = before.get("greedy_replies")
    batches = training_batches(target, cases, safe, cfg)
    spec = cfg.defence_spec
    defence = lm_defence(
        spec.kind, spec.where, spec.eps, target.lm.model, sample_batch(batches[0]), relative_eps=spec.relative_eps,
        steps=cfg.attack_steps, away_weight=cfg.away_weight, retain_weight=cfg.retain_weight,
    )
    torch.manual_seed(derive_seed(cfg.seed, "lora-init"))
    model = apply_lora(target.lm.model, cfg.lora)
    if not cfg.lora.enabled:
        model.requires_grad_(True)
    partial = output.with_name(output.name + ".partial")
    settings = TrainSettings(lr=cfg.lr, optimizer="adamw", seed=derive_seed(cfg.seed, "train") % 2**31,
                             checkpoint_every=5)
    trainer = AdversarialTrainer(
        model, LanguageModelTask(), defence, settings, device=target.lm.device, checkpoint_dir=partial,
        on_step=(lambda entry: on_step(entry.step, len(batches))) if on_step is not None else None,
    )
    logs = trainer.fit(batches)
    merge = getattr(model, "merge_and_unload", None)
    merged = merge() if callable(merge) else model
    merged.eval()
    target.lm.model = merged
    after = cost_measures(target, cases, cfg, reference)
    manifest = {
        "config": cfg.model_dump(mode="json"),
        "provenance": collect({"target": cfg.target, "runs": list(cfg.runs)}),
        "counts": cases.counts(),
        "thresholds": cases.thresholds,
        "defence": defence.describe() if cfg.defence != "sft" else {"kind": "none"},
        "before": {k: v for k, v in before.items() if k != "greedy_replies"},
        "after": {k: v for k, v in after.items() if k != "greedy_replies"},
        "seconds": time.perf_counter() - start,
        "steps": [entry.to_dict() for entry in logs],
        "failures": [asdict(c) | {"safe_reply": s} for c, s in zip(cases.failures, safe, strict=True)],
        "held_out": [c.test_case for c in cases.held_out],
    }
    staging = output.with_name(output.name + ".saving")
    shutil.rmtree(staging, ignore_errors=True)
    merged.save_pretrained(staging)
    target.lm.tokenizer.save_pretrained(staging)
    write_text_atomic(staging / MANIFEST, json.dumps(manifest, indent=2, allow_nan=True) + "\n")
    if output.exists():
        output.rmdir()  # empty, checked above
    staging.rename(output)
    shutil.rmtree(partial, ignore_errors=True)
    return manifest
