"""`redlat experiment trojans-lm`: plant trojans in a chat model, forget them on clean dialogues with each defence.

Casper et al. (2024)'s text-generation setting at a size that runs on a CPU. The dialogues (HH-RLHF harmless-base or
any file of its shape) are split once into four disjoint sets: planting, forgetting, retain (targeted LAT's benign
data) and held out. Per seed:

1. Plant: LoRA fine-tuning on the planting dialogues (their preferred replies) plus, per trojan, triggered copies
   that reply with the trojan's target; the adapters are merged, giving the poisoned model. Its adapters are
   checkpointed in RUN_DIR/base_models/, so a resumed run does not plant again.
2. Forget, once per defence, from a copy of the poisoned model with fresh adapters, on clean dialogues only (the
   defender never sees a trigger): plain fine-tuning, AT (the embeddings), LAT (hidden layers), or targeted LAT
   (toward the preferred reply, away from the rejected one, plus a retain loss).
3. Measure on the held-out dialogues: per trojan, the exact match of greedy replies to triggered prompts and the
   target's mean per-token log-probability; benign replies that start like a target (false triggers); clean loss
   (mean per-token NLL) of the preferred and the rejected replies; and the drift of benign greedy replies, as
   agreement with the poisoned model (before the forget phase) and with the original model (before planting).

The original and poisoned models are stored as settings `original` and `poisoned`; each (setting, seed) is one
transaction in the run store, so an interrupted sweep resumes at the first missing one. A defence's training is
checkpointed every few steps, so it resumes mid-phase too.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from redlat.adversarial.lm_batches import completion_batch, pair_batch
from redlat.adversarial.lm_layers import eps_by_layer, layer_modules, lm_defence, lm_task
from redlat.adversarial.lm_trojans import (
    LMTrojan,
    agreement,
    distinct_share,
    greedy_replies,
    matches_target,
    poisoned_examples,
    reply_logprobs,
    starts_like,
    target_tokens,
    with_trigger,
)
from redlat.adversarial.tasks import LanguageModelTask
from redlat.adversarial.trainers import AdversarialTrainer, Defence, StepLog, TrainSettings, apply_lora
from redlat.atomic import write_text_atomic
from redlat.config import LMDefenceSpec, TrojansLMConfig
from redlat.dialogues import Dialogue, read_hh, resolve_dialogues
from redlat.errors import ConfigError
from redlat.experiments.layout import Column, Front, Layout
from redlat.experiments.runs import open_experiment_store
from redlat.experiments.sweep import BarFactory, Done, Progress, run_sweep
from redlat.generation import derive_seed
from redlat.scale.sweeps import BaseStep, CellResult, SettingStep
from redlat.store import RunStore

log = logging.getLogger(__name__)

COMMAND = "experiment trojans-lm"
ORIGINAL = "original"  # the model before planting
POISONED = "poisoned"  # the model after planting, before the forget phase
CHECKPOINT_EVERY = 5  # forget-phase steps between checkpoints


# -- data ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Splits:
    plant: list[Dialogue]
    forget: list[Dialogue]
    retain: list[Dialogue]
    held_out: list[Dialogue]


def load_splits(cfg: TrojansLMConfig) -> Splits:
    """The four disjoint sets, from dialogues with two distinct, non-empty final replies (fixed shuffle)."""
    path = resolve_dialogues(cfg.dialogues)
    usable = [
        d for d in read_hh(path) if d.chosen.strip() and d.rejected.strip() and d.chosen.strip() != d.rejected.strip()
    ]
    need = cfg.dialogues_needed
    if len(usable) < need:
        raise ConfigError(
            f"{path} has {len(usable)} usable dialogues; this config needs {need} "
            f"({cfg.plant_dialogues} planting + 2 x {cfg.forget_dialogues} forget/retain + {cfg.eval_dialogues} "
            "held out): lower those settings or give a larger file"
        )
    random.Random(0).shuffle(usable)
    a = cfg.plant_dialogues
    b = a + cfg.forget_dialogues
    c = b + cfg.forget_dialogues
    return Splits(usable[:a], usable[a:b], usable[b:c], usable[c:need])


def trojans_from_config(cfg: TrojansLMConfig) -> list[LMTrojan]:
    return [LMTrojan(t.name, t.trigger, t.target) for t in cfg.trojans]


def _limits(cfg: TrojansLMConfig) -> dict[str, int]:
    return {"max_prompt": cfg.max_prompt_tokens, "max_completion": cfg.max_reply_tokens}


def _shuffled(items: Sequence[Any], seed: int, epochs: int) -> list[Any]:
    out: list[Any] = []
    for epoch in range(epochs):
        order = list(items)
        random.Random(derive_seed(seed, "epoch", epoch)).shuffle(order)
        out += order
    return out


def plant_batches(tok: Any, cfg: TrojansLMConfig, splits: Splits, trojans: Sequence[LMTrojan], seed: int) -> list:
    examples = poisoned_examples(splits.plant, trojans, rate=cfg.poison_rate, seed=derive_seed(seed, "poison"))
    order = _shuffled(examples, derive_seed(seed, "plant"), cfg.plant_epochs)
    size = cfg.batch_size
    return [completion_batch(tok, order[i : i + size], **_limits(cfg)) for i in range(0, len(order), size)]


def forget_batches(tok: Any, cfg: TrojansLMConfig, splits: Splits, spec: LMDefenceSpec, seed: int) -> list:
    """Clean batches: (prompt, preferred reply); for targeted LAT, (prompt, preferred, rejected) pairs with a retain
    batch of other dialogues' (prompt, preferred reply)."""
    order = _shuffled(splits.forget, derive_seed(seed, "forget"), cfg.forget_epochs)
    retain = _shuffled(splits.retain, derive_seed(seed, "retain"), cfg.forget_epochs)
    size, limits = cfg.batch_size, _limits(cfg)
    batches = []
    for i in range(0, len(order), size):
        chunk = order[i : i + size]
        if spec.kind == "targeted-lat":
            pairs = [(list(d.messages), d.chosen, d.rejected) for d in chunk]
            benign = [(list(d.messages), d.chosen) for d in retain[i : i + size]]
            batches.append(pair_batch(tok, pairs, retain=benign, **limits))
        else:
            batches.append(completion_batch(tok, [(list(d.messages), d.chosen) for d in chunk], **limits))
    return batches


def make_defence(
    spec: LMDefenceSpec, cfg: TrojansLMConfig, model: nn.Module, sample: dict[str, torch.Tensor]
) -> Defence:
    """The trainer's Defence for a spec, with relative eps made absolute per layer on the sample batch."""
    return lm_defence(
        spec.kind, spec.where, spec.eps, model, sample, recipe=spec.recipe, relative_eps=spec.relative_eps,
        steps=cfg.attack_steps, away_weight=cfg.away_weight, retain_weight=cfg.retain_weight,
    )


# -- measures -----------------------------------------------------------------------------------------------------


def evaluate(
    model: nn.Module,
    tok: Any,
    cfg: TrojansLMConfig,
    held_out: Sequence[Dialogue],
    trojans: Sequence[LMTrojan],
    references: dict[str, list[str]],
) -> tuple[dict[str, float], dict[str, Any]]:
    """The measures of one model, and its greedy replies ("benign": to the held-out prompts; "triggered": per trojan,
    to the triggered prompts exact match is measured on). `references`: metric name -> another model's benign
    replies (agreement is the share whose first words match)."""
    limits = _limits(cfg)
    benign = [list(d.messages) for d in held_out]
    metrics: dict[str, float] = {}
    triggered_replies: dict[str, list[str]] = {}
    for trojan in trojans:
        triggered = [with_trigger(m, trojan.trigger) for m in benign]
        lp = reply_logprobs(model, tok, [(m, trojan.target) for m in triggered], **limits)
        metrics[f"logprob:{trojan.name}"] = float(lp.mean())
        lp = reply_logprobs(model, tok, [(m, trojan.target) for m in benign], **limits)
        metrics[f"logprob_benign:{trojan.name}"] = float(lp.mean())
        replies = greedy_replies(
            model, tok, triggered[: cfg.eval_generate], max_new_tokens=target_tokens(tok, trojan.target),
            max_prompt=cfg.max_prompt_tokens,
        )
        triggered_replies[trojan.name] = replies
        metrics[f"em:{trojan.name}"] = sum(matches_target(r, trojan.target) for r in replies) / max(len(replies), 1)
    n = max(len(trojans), 1)
    metrics["mean_em"] = sum(metrics[f"em:{t.name}"] for t in trojans) / n
    metrics["mean_logprob"] = sum(metrics[f"logprob:{t.name}"] for t in trojans) / n
    metrics["mean_logprob_benign"] = sum(metrics[f"logprob_benign:{t.name}"] for t in trojans) / n
    replies = greedy_replies(model, tok, benign, max_new_tokens=cfg.reply_tokens, max_prompt=cfg.max_prompt_tokens)
    hits = [any(starts_like(r, t.target) for t in trojans) for r in replies]
    metrics["false_trigger"] = sum(hits) / max(len(hits), 1)
    metrics["distinct_replies"] = distinct_share(replies)
    for key, reply in (("loss_chosen", "chosen"), ("loss_rejected", "rejected")):
        items = [(list(d.messages), getattr(d, reply)) for d in held_out]
        metrics[key] = -float(reply_logprobs(model, tok, items, **limits).mean())
    for name, reference in references.items():
        metrics[name] = agreement(replies, reference, words=cfg.agreement_words)
        if name == "agreement":
            metrics["reference_logprob"] = reference_logprob(model, tok, cfg, held_out, reference)
    return metrics, {"benign": replies, "triggered": triggered_replies}


def reference_logprob(
    model: nn.Module, tok: Any, cfg: TrojansLMConfig, held_out: Sequence[Dialogue], reference: Sequence[str]
) -> float:
    """Mean per-token log-probability, under `model`, of another model's greedy benign replies (teacher forced; no
    end-of-sequence, the replies were cut at a token count): a smooth measure of drift (higher: closer)."""
    items = [(list(d.messages), r) for d, r in zip(held_out, reference, strict=True)]
    return float(reply_logprobs(model, tok, items, **_limits(cfg), eos=False).mean())


# -- the sweep ----------------------------------------------------------------------------------------------------


class _Sweep:
    """What every stage of one run shares: the config, data, tokenizer, original model, store and progress."""

    def __init__(self, cfg: TrojansLMConfig, run_dir: Path, loaded: Any, splits: Splits, trojans: list[LMTrojan]):
        self.cfg, self.run_dir, self.splits, self.trojans = cfg, run_dir, splits, trojans
        self.tok, self.original, self.device = loaded.tokenizer, loaded.model, loaded.device
        self.original.requires_grad_(False)
        self.note: Callable[[str], None] | None = None  # shows "setting step i/n" while a phase trains

    def _on_step(self, setting: str, total: int) -> Callable[[StepLog], None] | None:
        note = self.note
        if note is None:
            return None
        return lambda entry: note(f"{setting} step {entry.step}/{total}")

    def _replies_path(self, setting: str, seed: int) -> Path:
        return self.run_dir / "replies" / f"{setting}-seed-{seed}.json"

    def save_replies(self, setting: str, seed: int, replies: dict[str, Any]) -> None:
        """A setting's greedy replies (benign and triggered), kept for reading and as drift references."""
        write_text_atomic(self._replies_path(setting, seed), json.dumps(replies, indent=1) + "\n")

    def benign_replies(self, setting: str, seed: int, model: nn.Module) -> list[str]:
        """A stored setting's benign greedy replies (recomputed from `model` if the file is gone)."""
        path = self._replies_path(setting, seed)
        if path.exists():
            return list(json.loads(path.read_text())["benign"])
        prompts = [list(d.messages) for d in self.splits.held_out]
        limit = self.cfg.max_prompt_tokens
        return greedy_replies(model, self.tok, prompts, max_new_tokens=self.cfg.reply_tokens, max_prompt=limit)

    def plant(self, seed: int) -> tuple[nn.Module, list[StepLog]]:
        """The poisoned model of this seed (adapters trained, or loaded from base_models/, then merged)."""
        cfg = self.cfg
        torch.manual_seed(derive_seed(seed, "lora-init"))
        model = apply_lora(copy.deepcopy(self.original), cfg.lora)
        model.requires_grad_(False)
        trainable = [p for n, p in model.named_parameters() if "lora_" in n] if cfg.lora.enabled else None
        for p in trainable if trainable is not None else model.parameters():
            p.requires_grad_(True)
        settings = TrainSettings(
            lr=cfg.plant_lr, optimizer="adamw", seed=derive_seed(seed, "plant") % 2**31, checkpoint_every=10
        )
        batches = plant_batches(self.tok, cfg, self.splits, self.trojans, seed)
        trainer = AdversarialTrainer(
            model, LanguageModelTask(), Defence(), settings, device=self.device,
            checkpoint_dir=self.run_dir / "base_models" / f"seed-{seed}",
            on_step=self._on_step("planting", len(batches)),
        )
        logs = trainer.fit(batches)
        merge = getattr(model, "merge_and_unload", None)
        merged = merge() if callable(merge) else model
        merged.requires_grad_(False)
        merged.eval()
        return merged, logs

    def defend(
        self, poisoned: nn.Module, spec: LMDefenceSpec, seed: int
    ) -> tuple[nn.Module, list[StepLog], dict[str, float]]:
        cfg = self.cfg
        batches = forget_batches(self.tok, cfg, self.splits, spec, seed)
        model = copy.deepcopy(poisoned)
        sample = batches[0].get("safe", batches[0])
        defence = make_defence(spec, cfg, model, sample)
        torch.manual_seed(derive_seed(seed, spec.name, "lora-init"))
        model = apply_lora(model, cfg.lora)
        if not cfg.lora.enabled:
            model.requires_grad_(True)
        settings = TrainSettings(
            lr=cfg.forget_lr, optimizer="adamw", seed=derive_seed(seed, spec.name) % 2**31,
            checkpoint_every=CHECKPOINT_EVERY,
        )
        trainer = AdversarialTrainer(
            model, lm_task(spec.recipe), defence, settings, device=self.device,
            checkpoint_dir=self.checkpoints(seed, spec.name), on_step=self._on_step(spec.name, len(batches)),
        )
        logs = trainer.fit(batches)
        model.eval()
        return model, logs, eps_by_layer(spec.where, defence)

    def checkpoints(self, seed: int, setting: str) -> Path:
        return self.run_dir / "checkpoints" / f"seed-{seed}" / setting


def _same(sweep: _Sweep) -> _Sweep:
    return sweep


def _build_sweep(cfg: TrojansLMConfig, run_dir: Path) -> _Sweep:
    """A sweep of its own, for a Ray task (the model loaded where the task runs)."""
    from redlat.models.causal_lm import load_causal_lm

    loaded = load_causal_lm(cfg.model, device=cfg.device, dtype=cfg.dtype)
    return _Sweep(cfg, run_dir, loaded, load_splits(cfg), trojans_from_config(cfg))


def _base_step(
    sweeps: Callable[[], _Sweep], done: frozenset[tuple[str, int]], seed: int
) -> tuple[tuple[dict[str, torch.Tensor], dict[str, list[str]]], list[CellResult]]:
    """The seed's original and poisoned measures (unless stored), the poisoned model as a CPU state dict, and the
    benign replies the defences' drift is measured against."""
    sweep = sweeps()
    cfg, splits = sweep.cfg, sweep.splits
    results: list[CellResult] = []
    if (ORIGINAL, seed) not in done:
        t0 = time.perf_counter()
        metrics, replies = evaluate(sweep.original, sweep.tok, cfg, splits.held_out, sweep.trojans, {})
        metrics |= {"agreement_original": 1.0, "eval_seconds": time.perf_counter() - t0}
        sweep.save_replies(ORIGINAL, seed, replies)
        results.append(CellResult(ORIGINAL, seed, metrics, describe(None, ORIGINAL)))
    refs = {"agreement_original": sweep.benign_replies(ORIGINAL, seed, sweep.original)}
    t0 = time.perf_counter()
    poisoned, plant_logs = sweep.plant(seed)
    plant_seconds = time.perf_counter() - t0
    if (POISONED, seed) not in done:
        metrics, replies = evaluate(poisoned, sweep.tok, cfg, splits.held_out, sweep.trojans, refs)
        metrics |= {"agreement": 1.0, "train_seconds": plant_seconds}
        metrics["reference_logprob"] = reference_logprob(poisoned, sweep.tok, cfg, splits.held_out, replies["benign"])
        sweep.save_replies(POISONED, seed, replies)
        results.append(CellResult(POISONED, seed, metrics, describe(None, POISONED), [x.to_dict() for x in plant_logs]))
    refs["agreement"] = sweep.benign_replies(POISONED, seed, poisoned)
    state = {k: v.detach().cpu() for k, v in poisoned.state_dict().items()}
    return (state, refs), results


def _defence_step(
    sweeps: Callable[[], _Sweep],
    start: tuple[dict[str, torch.Tensor], dict[str, list[str]]],
    spec: LMDefenceSpec,
    seed: int,
) -> CellResult:
    """One defence's forget phase from the seed's poisoned model, and its measures."""
    sweep = sweeps()
    state, refs = start
    poisoned = copy.deepcopy(sweep.original)
    poisoned.load_state_dict(state)
    poisoned.eval()
    t0 = time.perf_counter()
    model, logs, eps = sweep.defend(poisoned, spec, seed)
    seconds = time.perf_counter() - t0
    metrics, replies = evaluate(model, sweep.tok, sweep.cfg, sweep.splits.held_out, sweep.trojans, refs)
    # "eps": the smallest layer's, as before; "eps:LAYER": each layer's own
    metrics |= {"train_seconds": seconds, "eps": min(eps.values(), default=0.0)}
    metrics |= {f"eps:{layer}": value for layer, value in eps.items()}
    sweep.save_replies(spec.name, seed, replies)
    shutil.rmtree(sweep.checkpoints(seed, spec.name), ignore_errors=True)
    return CellResult(spec.name, seed, metrics, describe(spec), [x.to_dict() for x in logs])


def describe(spec: LMDefenceSpec | None, reference: str | None = None) -> dict[str, Any]:
    if spec is None:
        label = "original, before planting" if reference == ORIGINAL else "poisoned, before the forget phase"
        return {"kind": reference, "family": reference, "label": label}
    return spec.describe()


def run_trojans_lm(
    cfg: TrojansLMConfig,
    run_dir: Path,
    *,
    provenance: dict[str, Any] | None = None,
    progress: Progress | None = None,
    bar: BarFactory | None = None,
    loaded: Any = None,
) -> RunStore:
    """Run (or resume) the sweep into run_dir; returns the open store (the caller closes it). `loaded`: a LoadedLM
    of cfg.model already in memory (else it is loaded)."""
    splits = load_splits(cfg)  # a missing or short dialogue file fails before the model loads
    if loaded is None:
        from redlat.models.causal_lm import load_causal_lm

        loaded = load_causal_lm(cfg.model, device=cfg.device, dtype=cfg.dtype)
    for spec in cfg.defences:
        layer_modules(loaded.model, spec.where)  # a wrong layer fails now, not after planting
    sweep = _Sweep(cfg, run_dir, loaded, splits, trojans_from_config(cfg))
    store = open_experiment_store(run_dir, COMMAND, cfg, provenance or {})

    def show_notes(progress_bar: Any) -> None:
        postfix = getattr(progress_bar, "set_postfix_str", None)
        if callable(postfix):
            sweep.note = lambda text: postfix(text, refresh=True)

    def steps(done: Done) -> tuple[BaseStep, SettingStep]:
        # In-process the steps share this process's sweep (its loaded model); a Ray task builds its own.
        sweeps: Callable[[], _Sweep] = (
            functools.partial(_build_sweep, cfg, run_dir) if cfg.ray.enabled else functools.partial(_same, sweep)
        )
        return functools.partial(_base_step, sweeps, done), functools.partial(_defence_step, sweeps)

    return run_sweep(store, seeds=cfg.seeds, references=(ORIGINAL, POISONED), settings=cfg.defences, steps=steps,
                     line=_line, ray=cfg.ray, progress=progress, bar=bar, on_bar=show_notes)


def _line(result: CellResult) -> str:
    metrics = result.metrics
    return (
        f"{result.setting:<24} seed {result.seed}: trojan exact match {100 * metrics['mean_em']:.1f}%  "
        f"target log-prob {metrics['mean_logprob']:.2f}  loss(good) {metrics['loss_chosen']:.2f}"
        + (f"  agreement {100 * metrics['agreement']:.0f}%" if "agreement" in metrics else "")
    )


# -- summary ------------------------------------------------------------------------------------------------------


def layout(config: dict[str, Any]) -> Layout:
    """How the summary, table and figures of a trojans-lm run are laid out."""
    trojans = [t["name"] for t in config.get("trojans", [])]
    return Layout(
        experiment="trojans-lm",
        x="reference_logprob",
        x_label="log-prob of the poisoned model's benign replies (per token; higher: less drift)",
        references=((ORIGINAL, "original (before planting)"), (POISONED, "poisoned (before forgetting)")),
        fronts=(
            Front("drift_vs_trojan_success", "mean_em", False,
                  "mean trojan exact match (lower is better)", "Drift vs trojan success", "E"),
            Front("drift_vs_target_logprob", "mean_logprob", False,
                  "mean target log-prob per token (lower is better)", "Drift vs target likelihood", "L"),
        ),
        columns=(
            *(Column(f"EM {t}", f"em:{t}") for t in trojans),
            Column("mean EM", "mean_em"),
            Column("target logp", "mean_logprob", percent=False),
            Column("logp no trigger", "mean_logprob_benign", percent=False),
            Column("false hits", "false_trigger"),
            Column("loss good", "loss_chosen", percent=False),
            Column("loss bad", "loss_rejected", percent=False),
            Column("distinct", "distinct_replies"),
            Column("ref logp", "reference_logprob", percent=False),
            Column("agree", "agreement"),
            Column("agree orig", "agreement_original"),
        ),
        unbounded=(
            *(f"eps:{layer}" for d in config.get("defences", [])
              for layer in LMDefenceSpec.model_validate(d).where),
            "train_seconds", "eval_seconds", "eps", "mean_logprob", "mean_logprob_benign", "loss_chosen",
            "reference_logprob",
            "loss_rejected", *(f"logprob:{t}" for t in trojans), *(f"logprob_benign:{t}" for t in trojans),
        ),
        defence_names=tuple(LMDefenceSpec.model_validate(d).name for d in config.get("defences", [])),
        panels=(
            ("what the trigger still does", (*(f"em:{t}" for t in trojans), "mean_em", "mean_logprob",
                                             "mean_logprob_benign")),
            ("what the defence cost", ("false_trigger", "loss_chosen", "loss_rejected", "distinct_replies",
                                       "reference_logprob", "agreement", "agreement_original")),
        ),
        caption="EM: greedy reply to a triggered prompt starts with the target; false hits: benign replies that "
        "do; target logp: the target's mean per-token log-prob after triggered prompts (no trigger: the same prompts "
        "without it); loss: per-token NLL of held-out preferred (good) and rejected (bad) replies; distinct: the "
        "share of distinct benign replies; ref logp: the log-prob per token of the poisoned model's benign greedy "
        "replies; agree: benign greedy replies whose first words match the poisoned (orig: the original) model's. "
        "Front: E = ref logp vs exact match, L = ref logp vs target log-prob",
    )


def open_run(
    cfg: TrojansLMConfig,
    run_dir: Path,
    *,
    progress: Progress | None = None,
    bar: BarFactory | None = None,
    loaded: Any = None,
) -> RunStore:
    """The sweep with its provenance (the chat model, the dialogues, the trojans): its finished store, open."""
    from redlat.provenance import collect

    models = {"chat_model": cfg.model, "dialogues": cfg.dialogues, "trojans": [t.model_dump() for t in cfg.trojans]}
    return run_trojans_lm(cfg, run_dir, provenance=collect(models), progress=progress, bar=bar, loaded=loaded)
