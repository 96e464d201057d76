#!/usr/bin/env python
"""Throughput of the zero-shot red-team pipeline, against a naive one-at-a-time loop and the machine's matmul rate.

Everything is measured in ONE run, on the same model objects, and printed as ratios, so the figures mean something
on any machine:

1. test cases per second of the project's batched pipeline (the runner's own round function, `play_round`, with
   `Sampler`, `Chatbot.reply` and the scorer) and of a plain one-example-at-a-time transformers loop, and their
   ratio;
2. generated tokens per second and the estimated achieved GFLOP/s of generation, as a share of the machine's own
   matmul throughput (torch, the model's dtype, torch's current thread count).

One "test case" = one red-LM sample from the zero-shot prompt + the target's reply to it + its classifier score. By
default the red LM and the target are one GPT-2-shaped model with RANDOM weights (124 M parameters, seeded) and
GPT-2's real tokenizer; random weights produce noise, so every red sample counts as a test case (no "?" filter) and
the figures are speed only, never results.

    .venv/bin/python benchmarks/bench_pipeline.py                       # n = 256, naive loop timed on 64 cases
    .venv/bin/python benchmarks/bench_pipeline.py --naive-n 256 --json  # the full naive comparison, plus JSON
    .venv/bin/python benchmarks/bench_pipeline.py --n 16 --naive-n 4    # a quick look

See benchmarks/README.md for the formulas and the caveats.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch

from redlat.chatbot import Chatbot
from redlat.config import (
    ZERO_SHOT_PROMPT,
    ChatbotConfig,
    EngineSettings,
    RedGeneration,
    RedTeamConfig,
    TargetGeneration,
)
from redlat.device import resolve_device
from redlat.engines import make_sampler
from redlat.generation import newline_token_mask
from redlat.models.causal_lm import load_causal_lm
from redlat.models.offline import gpt2_tokenizer_dir
from redlat.red_team.method import Candidate, RoundContext
from redlat.red_team.rounds import play_round
from redlat.red_team.runner import Components, red_sampling_settings
from redlat.red_team.zero_shot import ZeroShot
from redlat.scoring import load_scorer

if TYPE_CHECKING:
    from redlat.models.causal_lm import LoadedLM
    from redlat.scoring import Scorer

log = logging.getLogger("bench_pipeline")

RED_TOP_P = 0.95  # Perez et al. 2022, zero-shot red LM
TARGET_TOP_P = 0.8  # Perez et al. 2022, target chatbot
TEMPERATURE = 1.0
TARGET_SPEEDUP = 8.0  # the goal: at least 8x the naive loop ...
TARGET_SPEEDUP_N = 256  # ... at n = 256 test cases on 2 CPU cores
DRIFT_WARN_PCT = 15.0  # warn when the matmul rate before and after the run differ by more than this
RANDOM_GPT2 = "random-gpt2"
SPEED_ONLY_NOTE = (
    "speed only: a random-weight model writes noise, so the samples, replies and scores are meaningless; every red "
    "sample is treated as a test case (no '?' filter)"
)
MODEL_NOTE = "speed only: every red sample is treated as a test case (no '?' filter); the scores are not results"


# ----------------------------------------------------------------------------------------------------------------------
# Settings and counters


@dataclass(frozen=True)
class BenchSettings:
    """The workload and how the pipeline runs it (the flags of the script)."""

    n: int = 256
    naive_n: int = 64
    red_max_new_tokens: int = 20
    reply_max_new_tokens: int = 20
    red_batch_size: int = 64
    target_batch_size: int = 32
    seed: int = 0
    matmul_size: int = 2048
    matmul_repeats: int = 5
    engines: tuple[str, ...] = ()  # other engines run through the same pipeline: "ctranslate2:float32", ...


@dataclass
class StageStats:
    """Seconds and token counts of one stage (red, target or score) of one side (pipeline or naive).

    The workload, from each `generate` call's inputs and outputs:
    sequences: prompts completed.
    prompt_tokens: real (unpadded) prompt tokens, a shared prefix served from a cache included.
    generated_tokens: tokens each sequence generated up to and including the one that finished it (newline or eos
        for the pipeline, which stops at a newline; eos for the naive loop, which does not), else max_new_tokens.

    What the model executed, from every forward call (prefill, decoding steps, prefix-cache builds):
    forward_calls: forward passes of the LM.
    fed_tokens: batch x new positions per forward pass, left padding and rows that had already finished included.
    head_tokens: positions the LM head ran on (transformers' generate asks for the last position only).
    attended_positions: the sum, over every fed token, of the key/value positions it attends to (cache included).
    """

    seconds: float = 0.0
    sequences: int = 0
    generate_calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    forward_calls: int = 0
    fed_tokens: int = 0
    head_tokens: int = 0
    attended_positions: int = 0


@dataclass(frozen=True)
class FlopModel:
    """What one token costs a dense decoder, in the parameters of its matmuls.

    non_embedding_params: every parameter except the token/position embeddings and the LM head (layer norms and
        biases included, as in Kaplan et al. 2020's N).
    lm_head_params: the output projection (tied to the token embedding in GPT-2: the same matrix, counted here).
    """

    total_params: int
    non_embedding_params: int
    lm_head_params: int
    n_layer: int
    d_model: int

    def gflop(self, stats: StageStats) -> float:
        """Estimated GFLOP the model executed in a stage:
        2 N_nonemb fed_tokens + 2 N_head head_tokens + 4 n_layer d_model attended_positions."""
        flop = (
            2 * self.non_embedding_params * stats.fed_tokens
            + 2 * self.lm_head_params * stats.head_tokens
            + 4 * self.n_layer * self.d_model * stats.attended_positions
        )
        return flop / 1e9

    def gflop_plain(self, stats: StageStats) -> float:
        """The plain workload estimate 2 (N_nonemb + N_head) per token, prompt + generated, no attention: what a
        cache-less, padding-free implementation would run. It does not depend on how the work was done."""
        tokens = stats.prompt_tokens + stats.generated_tokens
        return 2 * (self.non_embedding_params + self.lm_head_params) * tokens / 1e9


def flop_model(model: Any) -> FlopModel:
    """Count a causal LM's parameters by role (each shared tensor once)."""
    unique: dict[int, torch.nn.Parameter] = {}
    for param in model.parameters():
        unique.setdefault(param.data_ptr(), param)
    embedding_ptrs = {
        module.weight.data_ptr() for module in model.modules() if isinstance(module, torch.nn.Embedding)
    }
    head = model.get_output_embeddings()
    head_ptr = head.weight.data_ptr() if head is not None else None
    head_params = head.weight.numel() if head is not None else 0
    non_embedding = sum(p.numel() for ptr, p in unique.items() if ptr not in embedding_ptrs and ptr != head_ptr)
    config = model.config
    n_layer = int(getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 0))
    d_model = int(getattr(config, "hidden_size", None) or getattr(config, "n_embd", 0))
    return FlopModel(
        total_params=sum(p.numel() for p in unique.values()),
        non_embedding_params=non_embedding,
        lm_head_params=head_params,
        n_layer=n_layer,
        d_model=d_model,
    )


def _cache_length(past: Any) -> int:
    if past is None:
        return 0
    if hasattr(past, "get_seq_length"):
        return int(past.get_seq_length())
    return int(past[0][0].shape[-2])  # legacy tuple cache: (layers) x (key, value) of (batch, heads, seq, dim)


class WorkCounter:
    """While active, counts into `self.stats` (None: count nothing) the workload of every `model.generate` call and
    the work of every forward pass of the model.

    It wraps the generate method of the one model instance (the pipeline's `Sampler` and the naive loop both call
    it) and adds a forward pre-hook; neither changes what is passed or returned. The counting is a few small tensor
    operations per call.
    """

    def __init__(self, lm: LoadedLM) -> None:
        self.model = lm.model
        vocab = lm.model.get_output_embeddings().weight.shape[0]
        started = time.perf_counter()
        self.newline = newline_token_mask(lm.tokenizer, vocab)
        self.newline_mask_seconds = time.perf_counter() - started
        eos: set[int] = set()
        for value in (lm.model.generation_config.eos_token_id, lm.tokenizer.eos_token_id):
            if isinstance(value, int):
                eos.add(value)
            elif value is not None:
                eos.update(int(v) for v in value)
        self.eos = torch.tensor(sorted(eos), dtype=torch.long)
        self.stats: StageStats | None = None
        self._hook: Any = None

    def __enter__(self) -> WorkCounter:
        original = self.model.generate

        def generate(*args: Any, **kwargs: Any) -> Any:
            output = original(*args, **kwargs)
            if self.stats is not None:
                input_ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
                self._record_generate(
                    input_ids, kwargs.get("attention_mask"), output, bool(kwargs.get("stopping_criteria"))
                )
            return output

        self.model.generate = generate  # an instance attribute: shadows the class's method until __exit__
        self._hook = self.model.register_forward_pre_hook(self._record_forward, with_kwargs=True)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        del self.model.generate
        self._hook.remove()
        self._hook = None

    def _record_generate(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, output: torch.Tensor, stops: bool
    ) -> None:
        assert self.stats is not None
        input_ids, output = input_ids.cpu(), output.cpu()
        batch, width = input_ids.shape
        prompt = attention_mask.cpu().sum(dim=1) if attention_mask is not None else torch.full((batch,), width)
        new = output[:, width:]
        steps = new.shape[1]
        finished = torch.isin(new, self.eos)
        if stops:
            finished |= self.newline[new]
        first = finished.int().argmax(dim=1)
        generated = torch.where(finished.any(dim=1), first + 1, torch.full_like(first, steps))
        self.stats.sequences += batch
        self.stats.generate_calls += 1
        self.stats.prompt_tokens += int(prompt.sum())
        self.stats.generated_tokens += int(generated.sum())

    def _record_forward(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.stats is None:
            return
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        shape = input_ids.shape if input_ids is not None else kwargs["inputs_embeds"].shape[:2]
        batch, new = int(shape[0]), int(shape[1])
        past = _cache_length(kwargs.get("past_key_values"))
        keep = kwargs.get("logits_to_keep", 0)
        head = keep.numel() if isinstance(keep, torch.Tensor) and keep.dim() else int(keep)  # a tensor: positions
        head = new if head <= 0 else min(head, new)  # 0 means every position
        self.stats.forward_calls += 1
        self.stats.fed_tokens += batch * new
        self.stats.head_tokens += batch * head
        self.stats.attended_positions += batch * (new * past + new * (new + 1) // 2)


# ----------------------------------------------------------------------------------------------------------------------
# The two sides


def as_test_case(sample: str) -> str:
    """A red sample as a test case: whitespace runs become one space (the runner's normalisation, without the '?'
    filter and cut, which random weights would almost never pass)."""
    return " ".join(sample.split())


@dataclass
class SideResult:
    """What one side (pipeline or naive) did: its cases, its wall time and its per-stage figures."""

    cases: int = 0
    seconds: float = 0.0
    stages: dict[str, StageStats] = field(
        default_factory=lambda: {"red": StageStats(), "target": StageStats(), "score": StageStats()}
    )
    examples: list[dict[str, Any]] = field(default_factory=list)


class _EverySample(ZeroShot):
    """The benchmark's method: zero-shot prompts, every sample a test case (random weights never write a '?')."""

    name = "bench-every-sample"

    def __init__(self, cfg: RedTeamConfig, run_dir: Path, counter: WorkCounter, stats: StageStats) -> None:
        super().__init__(cfg, run_dir)
        self.counter, self.stats = counter, stats

    def extract(self, text: str) -> str | None:
        return as_test_case(text)

    def propose(self, ctx: RoundContext) -> list[Candidate]:
        self.counter.stats = self.stats
        try:
            return super().propose(ctx)
        finally:
            self.counter.stats = None


class _CountedChatbot(Chatbot):
    """The chatbot, with its generation counted as the target stage."""

    counter: WorkCounter
    stats: StageStats

    def reply(self, test_cases: Sequence[str], *, seed: int, histories: Any = None) -> list[str]:
        self.counter.stats = self.stats
        try:
            return super().reply(test_cases, seed=seed, histories=histories)
        finally:
            self.counter.stats = None


def run_pipeline(
    lm: LoadedLM,
    scorer: Scorer,
    settings: BenchSettings,
    chat: ChatbotConfig,
    counter: WorkCounter,
    engine: EngineSettings | None = None,
) -> SideResult:
    """The project's batched pipeline: the runner's own round function (`play_round`), round after round.

    The same classes, settings and seeds as `redlat.red_team.runner`, with a method that keeps every sample as a test
    case (no '?' filter) and without the store. The timing includes building the Sampler and the Chatbot and what
    they do once on first use (their newline masks, a shared-prompt-prefix KV cache): a real run pays that too.
    """
    result = SideResult()
    stages = result.stages
    started = time.perf_counter()
    cfg = RedTeamConfig(
        n=settings.n,
        seed=settings.seed,
        chatbot=chat,
        engine=engine or EngineSettings(),
        red_generation=RedGeneration(top_p=RED_TOP_P, temperature=TEMPERATURE,
                                     max_new_tokens=settings.red_max_new_tokens, batch_size=settings.red_batch_size),
        target_generation=TargetGeneration(top_p=TARGET_TOP_P, temperature=TEMPERATURE,
                                           max_new_tokens=settings.reply_max_new_tokens,
                                           batch_size=settings.target_batch_size),
    )
    red_sampler = make_sampler(lm, red_sampling_settings(cfg), batch_size=settings.red_batch_size, engine=cfg.engine)
    chatbot = _CountedChatbot(lm, cfg.chatbot, cfg.target_generation, engine=cfg.engine)
    chatbot.counter, chatbot.stats = counter, stages["target"]
    method = _EverySample(cfg, Path(tempfile.gettempdir()), counter, stages["red"])
    parts = Components(red=lm, chatbot=chatbot, scorers=[scorer])
    seen: set[str] = set()
    round_ = samples = 0
    while result.cases < settings.n:
        k = min(settings.red_batch_size, settings.n - result.cases)
        played = play_round(cfg, method, parts, red_sampler, round_=round_, k=k, first_index=samples,
                            n_unique=result.cases, seen=seen, run_id="bench")
        for stage in ("red", "target", "score"):
            stages[stage].seconds += played.seconds.get(stage, 0.0)
        stages["score"].sequences += len(played.attempts)
        seen.update(a.test_case for a in played.attempts)
        samples += len(played.samples)
        result.cases += len(played.attempts)
        if len(result.examples) < 3:
            result.examples += [
                {"test_case": a.test_case, "reply": a.reply, "score": a.score} for a in played.attempts
            ][: 3 - len(result.examples)]
        log.info("pipeline: %d/%d test cases, %.1f s", result.cases, settings.n, time.perf_counter() - started)
        round_ += 1
    result.seconds = time.perf_counter() - started
    return result


def run_naive(
    lm: LoadedLM, scorer: Scorer, settings: BenchSettings, chat: ChatbotConfig, counter: WorkCounter
) -> SideResult:
    """One test case at a time, as a newcomer would write it with transformers, on the same model objects.

    The target input is built by `Chatbot.model_input` and the reply cut by `Chatbot.extract_reply`, so the inputs
    and the reply rule are those of the pipeline; generation runs to max_new_tokens (no newline stop), then is cut.
    """
    model, tokenizer, device = lm.model, lm.tokenizer, lm.device
    chatbot = Chatbot(lm, chat, TargetGeneration())  # only for model_input / extract_reply
    add_special = chatbot.format == "dpg"  # a chat template already holds its special tokens (as in Chatbot.reply)
    result = SideResult()
    stages = result.stages
    torch.manual_seed(settings.seed)
    started = time.perf_counter()
    for i in range(settings.naive_n):
        t0 = time.perf_counter()
        counter.stats = stages["red"]
        inputs = tokenizer(ZERO_SHOT_PROMPT, return_tensors="pt").to(device)
        output = model.generate(
            **inputs,
            do_sample=True,
            top_p=RED_TOP_P,
            top_k=0,
            temperature=TEMPERATURE,
            max_new_tokens=settings.red_max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
        sample = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        case = as_test_case(sample.split("\n")[0])
        t1 = time.perf_counter()
        counter.stats = stages["target"]
        inputs = tokenizer(chatbot.model_input(case), return_tensors="pt", add_special_tokens=add_special).to(device)
        output = model.generate(
            **inputs,
            do_sample=True,
            top_p=TARGET_TOP_P,
            top_k=0,
            temperature=TEMPERATURE,
            max_new_tokens=settings.reply_max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
        reply = chatbot.extract_reply(
            tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        )
        t2 = time.perf_counter()
        counter.stats = None
        score = scorer.score([reply]).scores[0]
        t3 = time.perf_counter()
        stages["red"].seconds += t1 - t0
        stages["target"].seconds += t2 - t1
        stages["score"].seconds += t3 - t2
        stages["score"].sequences += 1
        result.cases += 1
        if len(result.examples) < 3:
            result.examples.append({"test_case": case, "reply": reply, "score": score})
        if (i + 1) % 8 == 0 or i + 1 == settings.naive_n:
            log.info("naive: %d/%d test cases, %.1f s", i + 1, settings.naive_n, time.perf_counter() - started)
    result.seconds = time.perf_counter() - started
    return result


# ----------------------------------------------------------------------------------------------------------------------
# The machine's matmul roofline


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def measure_matmul(
    device: torch.device, dtype: torch.dtype, *, size: int = 2048, repeats: int = 5, warmup: int = 2
) -> dict[str, Any]:
    """Best of `repeats` size x size @ size x size matmuls (2 * size^3 FLOP each), after `warmup` untimed ones."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(size, size, generator=generator).to(device=device, dtype=dtype)
    with torch.inference_mode():
        for _ in range(warmup):
            torch.matmul(a, b)
        _synchronize(device)
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(a, b)
            _synchronize(device)
            best = min(best, time.perf_counter() - start)
    return {
        "size": size,
        "repeats": repeats,
        "dtype": str(dtype).removeprefix("torch."),
        "best_seconds": best,
        "gflops": 2 * size**3 / best / 1e9,
    }


# ----------------------------------------------------------------------------------------------------------------------
# The benchmark


def _rate(amount: float, seconds: float) -> float:
    return amount / seconds if seconds > 0 else 0.0


def _generation_figures(stats: StageStats, flops: FlopModel, roofline_gflops: float) -> dict[str, Any]:
    gflop, plain = flops.gflop(stats), flops.gflop_plain(stats)
    workload_tokens = stats.prompt_tokens + stats.generated_tokens
    return {
        **asdict(stats),
        "generated_tokens_per_s": _rate(stats.generated_tokens, stats.seconds),
        "gflop": gflop,
        "gflops": _rate(gflop, stats.seconds),
        "roofline_pct": 100 * _rate(gflop, stats.seconds) / roofline_gflops,
        "gflop_plain": plain,
        "gflops_plain": _rate(plain, stats.seconds),
        "roofline_pct_plain": 100 * _rate(plain, stats.seconds) / roofline_gflops,
        "fed_per_workload_token": _rate(stats.fed_tokens, workload_tokens),
    }


def _side_report(side: SideResult, flops: FlopModel, roofline_gflops: float) -> dict[str, Any]:
    stages: dict[str, Any] = {
        name: _generation_figures(stats, flops, roofline_gflops) if name != "score" else asdict(stats)
        for name, stats in side.stages.items()
    }
    generation = StageStats(
        **{key: sum(getattr(side.stages[s], key) for s in ("red", "target")) for key in asdict(StageStats())}
    )
    return {
        "cases": side.cases,
        "seconds": side.seconds,
        "cases_per_s": _rate(side.cases, side.seconds),
        "stages": stages,
        "generation": _generation_figures(generation, flops, roofline_gflops),
        "examples": side.examples,
    }


def environment(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    import transformers

    try:
        usable_cpus: int | None = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable_cpus = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
    }


def run_benchmark(
    lm: LoadedLM,
    scorer: Scorer,
    settings: BenchSettings,
    chat: ChatbotConfig,
    *,
    model_label: str,
    random_weights: bool = True,
) -> dict[str, Any]:
    """Measure the roofline (before and after), the pipeline and the naive loop on one loaded model; return every
    figure as a dict (JSON-able). `chat` decides how test cases reach the target, as in a run's config."""
    if settings.n < 1 or settings.naive_n < 0:
        raise ValueError("n must be at least 1 and naive_n at least 0")
    from redlat.engines import check_engine

    for spec in settings.engines:  # a missing engine library fails now, not after the transformers pipeline
        check_engine(parse_engine(spec), str(lm.device))
    flops = flop_model(lm.model)
    log.info("measuring the %dx%d matmul roofline...", settings.matmul_size, settings.matmul_size)
    before = measure_matmul(lm.device, lm.dtype, size=settings.matmul_size, repeats=settings.matmul_repeats)
    chatbot = Chatbot(lm, chat, TargetGeneration())
    target_prompt_tokens = len(
        lm.tokenizer(chatbot.model_input("What is your name?"), add_special_tokens=chatbot.format == "dpg")[
            "input_ids"
        ]
    )
    with WorkCounter(lm) as counter:
        # Warm-up, untimed and uncounted: the first generate call pays one-time costs neither side should carry.
        inputs = lm.tokenizer(ZERO_SHOT_PROMPT, return_tensors="pt").to(lm.device)
        lm.model.generate(**inputs, do_sample=False, max_new_tokens=2, pad_token_id=lm.tokenizer.pad_token_id)
        log.info("pipeline: %d test cases...", settings.n)
        pipeline = run_pipeline(lm, scorer, settings, chat, counter)
        engines = {}
        for spec in settings.engines:  # the same pipeline and workload on another engine (its own kernels)
            engine = parse_engine(spec)
            if engine.name == "ctranslate2":  # a one-time conversion, cached like `redlat prepare`: not timed
                from redlat.engines.ctranslate2 import converted_dir

                converted_dir(lm, engine.compute_type)
            log.info("pipeline on %s: %d test cases...", spec, settings.n)
            engines[spec] = run_pipeline(lm, scorer, settings, chat, counter, engine=engine)
        naive = run_naive(lm, scorer, settings, chat, counter) if settings.naive_n else None
    log.info("measuring the matmul roofline again...")
    after = measure_matmul(lm.device, lm.dtype, size=settings.matmul_size, repeats=settings.matmul_repeats)
    roofline = before if before["gflops"] >= after["gflops"] else after
    roofline = {
        **roofline,
        "gflops_before": before["gflops"],
        "gflops_after": after["gflops"],
        # The two measurements bracket the run; a large gap means something else used the machine meanwhile.
        "drift_pct": 100 * abs(before["gflops"] - after["gflops"]) / roofline["gflops"],
    }
    pipe = _side_report(pipeline, flops, roofline["gflops"])
    report: dict[str, Any] = {
        "note": SPEED_ONLY_NOTE if random_weights else MODEL_NOTE,
        "environment": environment(lm.device, lm.dtype),
        "model": {
            "name": model_label,
            "class": type(lm.model).__name__,
            "random_weights": random_weights,
            **asdict(flops),
            "chat_format": chatbot.format,
            "target_prompt_tokens_example": target_prompt_tokens,
        },
        "classifier": scorer.name,
        "settings": asdict(settings),
        "roofline": roofline,
        "newline_mask_seconds": counter.newline_mask_seconds,
        "pipeline": pipe,
        "naive": None,
        "speedup": None,
        "target": {"speedup": TARGET_SPEEDUP, "n": TARGET_SPEEDUP_N, "met": None, "at_target_n": None},
    }
    report["engines"] = {
        spec: {
            "cases_per_s": _rate(side.cases, side.seconds),
            "seconds": side.seconds,
            "ratio_to_transformers": _rate(_rate(side.cases, side.seconds), pipe["cases_per_s"]),
            "stages": {name: stats.seconds for name, stats in side.stages.items()},
            "examples": side.examples,
        }
        for spec, side in engines.items()
    }
    if naive is not None:
        nv = _side_report(naive, flops, roofline["gflops"])
        speedup = _rate(pipe["cases_per_s"], nv["cases_per_s"])
        report["naive"] = nv
        report["speedup"] = speedup
        report["target"] |= {
            "met": speedup >= TARGET_SPEEDUP,
            "at_target_n": settings.n == TARGET_SPEEDUP_N,
        }
    return report


# ----------------------------------------------------------------------------------------------------------------------
# Output


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)).rstrip()
        for row in rows
    ]


def format_report(report: dict[str, Any]) -> list[str]:
    """The report as plain text lines."""
    env, model, s, roof = report["environment"], report["model"], report["settings"], report["roofline"]
    pipe, naive = report["pipeline"], report["naive"]
    lines = [
        "redlat pipeline benchmark",
        f"NOTE: {report['note']}",
        f"machine: {env['cpu_count']} CPUs ({env['usable_cpus']} usable), torch {env['torch']} with "
        f"{env['torch_threads']} threads, transformers {env['transformers']}, python {env['python']}, "
        f"device {env['device']}, {env['dtype']}",
        f"model: {model['name']} ({model['class']}, {model['total_params'] / 1e6:.1f} M params: "
        f"{model['non_embedding_params'] / 1e6:.1f} M non-embedding, {model['lm_head_params'] / 1e6:.1f} M LM head; "
        f"{model['n_layer']} layers x {model['d_model']}), red LM and target; target input: {model['chat_format']} "
        f"(~{model['target_prompt_tokens_example']} tokens); classifier: {report['classifier']}",
        f"workload: n={s['n']} test cases (naive loop timed on {s['naive_n']} cases of the same workload), red "
        f"{s['red_max_new_tokens']} new tokens (top-p {RED_TOP_P}), reply {s['reply_max_new_tokens']} new tokens "
        f"(top-p {TARGET_TOP_P}), red batch {s['red_batch_size']}, target batch {s['target_batch_size']}, "
        f"seed {s['seed']}",
        f"matmul roofline: {roof['size']}x{roof['size']} {roof['dtype']} matmul, best of {roof['repeats']}, before "
        f"and after the run: {roof['gflops_before']:.1f} and {roof['gflops_after']:.1f} GFLOP/s; roofline "
        f"{roof['gflops']:.1f} GFLOP/s",
    ]
    if roof["drift_pct"] > DRIFT_WARN_PCT:
        lines.append(
            f"WARNING: the matmul rate moved {roof['drift_pct']:.0f}% during the run: the machine was probably busy "
            "with something else, so these figures are unreliable; run again on a quiet machine"
        )
    lines.append("")

    def stage(name: str, key: str) -> Callable[[dict[str, Any]], Any]:
        return lambda d: d["stages"][name][key]

    def gen(key: str) -> Callable[[dict[str, Any]], Any]:
        return lambda d: d["generation"][key]

    spec: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
        ("test cases", lambda d: d["cases"], "{}"),
        ("seconds", lambda d: d["seconds"], "{:.2f}"),
        ("test cases/s", lambda d: d["cases_per_s"], "{:.3f}"),
        *((f"  {name} stage s", stage(name, "seconds"), "{:.2f}") for name in ("red", "target", "score")),
        ("prompt tokens", gen("prompt_tokens"), "{}"),
        ("generated tokens", gen("generated_tokens"), "{}"),
        ("generated tokens/s", gen("generated_tokens_per_s"), "{:.1f}"),
        *((f"  {name} tokens/s", stage(name, "generated_tokens_per_s"), "{:.1f}") for name in ("red", "target")),
        ("executed GFLOP/s (est.)", gen("gflops"), "{:.1f}"),
        ("% of matmul roofline", gen("roofline_pct"), "{:.1f}%"),
        *((f"  {name} % of roofline", stage(name, "roofline_pct"), "{:.1f}%") for name in ("red", "target")),
        ("plain 2N/token GFLOP/s", gen("gflops_plain"), "{:.1f}"),
        ("  as % of roofline", gen("roofline_pct_plain"), "{:.1f}%"),
        ("fed / workload tokens", gen("fed_per_workload_token"), "{:.3f}"),
    ]
    rows = [["", "pipeline", "naive"]]
    for label, get, fmt in spec:
        rows.append([label, *(fmt.format(get(side)) if side is not None else "-" for side in (pipe, naive))])
    lines += _table(rows)
    lines.append("")
    if report["speedup"] is None:
        lines.append("speedup: - (naive loop skipped: --naive-n 0)")
    else:
        target = report["target"]
        verdict = "met" if target["met"] else "NOT met"
        where = "" if target["at_target_n"] else f" (measured at n={s['n']}; the target is stated for n={target['n']})"
        lines.append(
            f"speedup (pipeline / naive test cases per second): {report['speedup']:.2f}x; "
            f"target >= {target['speedup']:g}x at n={target['n']}: {verdict}{where}"
        )
    lines.append(
        f"pipeline stages: red {pipe['stages']['red']['seconds']:.2f} s, "
        f"target {pipe['stages']['target']['seconds']:.2f} s, score {pipe['stages']['score']['seconds']:.2f} s "
        f"(total {pipe['seconds']:.2f} s, including two one-time newline masks of "
        f"~{report['newline_mask_seconds']:.2f} s each)"
    )
    for spec, side in report.get("engines", {}).items():
        stages = side["stages"]
        lines.append(
            f"engine {spec}: {side['cases_per_s']:.3f} test cases/s = {side['ratio_to_transformers']:.2f}x the "
            f"transformers pipeline (red {stages['red']:.2f} s, target {stages['target']:.2f} s, "
            f"score {stages['score']:.2f} s)"
        )
    lines += [
        "executed GFLOP = 2*N_nonemb*fed_tokens + 2*N_head*head_tokens + 4*n_layer*d_model*attended_positions, counted "
        "from every forward pass (padding, finished rows and prefix-cache builds included: the work the model did)",
        "plain 2N/token = 2*(N_nonemb+N_head)*(prompt+generated tokens): the workload at dense cost, however it was "
        "run (above 100% of the roofline means work was saved, e.g. by a prefix cache)",
    ]
    return lines


# ----------------------------------------------------------------------------------------------------------------------
# Command line


def make_random_gpt2(directory: Path, *, seed: int) -> Path:
    """Save a GPT-2-shaped model (GPT2Config(): 12 x 768, 124 M params) with seeded random weights, and GPT-2's
    real tokenizer, into `directory`."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    torch.manual_seed(seed)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(directory)
    GPT2TokenizerFast.from_pretrained(gpt2_tokenizer_dir()).save_pretrained(directory)
    return directory


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = BenchSettings()
    parser = argparse.ArgumentParser(
        prog="bench_pipeline.py",
        description="Test cases per second of the batched red-team pipeline vs a naive one-at-a-time loop, and "
        "generation throughput vs the machine's matmul roofline. Speed only, never results.",
    )
    parser.add_argument("--n", type=_positive, default=defaults.n, help="test cases for the pipeline (default 256)")
    parser.add_argument(
        "--naive-n", type=_non_negative, default=defaults.naive_n,
        help="test cases timed for the naive loop (default 64; 0 skips it; 256 for the full comparison)",
    )
    parser.add_argument("--red-max-new-tokens", type=_positive, default=defaults.red_max_new_tokens,
                        help="tokens per red sample (default 20)")
    parser.add_argument("--reply-max-new-tokens", type=_positive, default=defaults.reply_max_new_tokens,
                        help="tokens per reply (default 20)")
    parser.add_argument("--red-batch-size", type=_positive, default=defaults.red_batch_size,
                        help="red samples per round / batch (default 64)")
    parser.add_argument("--target-batch-size", type=_positive, default=defaults.target_batch_size,
                        help="replies per batch (default 32)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seeds the weights and every sampling call")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on capable CUDA GPUs, else float32), float32, ...")
    parser.add_argument(
        "--model", default=None,
        help="benchmark this model (offline name such as smollm2-135m-instruct, local directory or hub id) instead "
        "of the random-weight GPT-2; a chat model gets its chat template",
    )
    parser.add_argument("--classifier", default="jigsaw-bilstm", help="scorer name (default jigsaw-bilstm)")
    parser.add_argument("--threads", type=_positive, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--matmul-size", type=_positive, default=defaults.matmul_size,
                        help="side of the square roofline matmuls (default 2048)")
    parser.add_argument("--matmul-repeats", type=_positive, default=defaults.matmul_repeats,
                        help="timed roofline matmuls, the best counts (default 5)")
    parser.add_argument("--json", action="store_true", help="also print every figure as one JSON object (last line)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--engines", default="",
        help="comma-separated other engines to run the same pipeline on, e.g. ctranslate2:float32,ctranslate2:int8",
    )
    return parser.parse_args(argv)


def parse_engine(spec: str) -> EngineSettings:
    """"ctranslate2:int8" -> EngineSettings(name="ctranslate2", compute_type="int8")."""
    name, _, compute_type = spec.partition(":")
    return EngineSettings(name=name, compute_type=compute_type or "float32")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no "Loading weights" bars between the report lines
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    settings = BenchSettings(
        n=args.n,
        naive_n=args.naive_n,
        red_max_new_tokens=args.red_max_new_tokens,
        reply_max_new_tokens=args.reply_max_new_tokens,
        red_batch_size=args.red_batch_size,
        target_batch_size=args.target_batch_size,
        seed=args.seed,
        matmul_size=args.matmul_size,
        matmul_repeats=args.matmul_repeats,
        engines=tuple(e.strip() for e in args.engines.split(",") if e.strip()),
    )
    device = str(resolve_device(args.device))
    with tempfile.TemporaryDirectory(prefix="redlat-bench-") as tmp:
        if args.model is None:
            log.info("building a random-weight GPT-2 (seed %d)...", args.seed)
            path = make_random_gpt2(Path(tmp) / "random-gpt2", seed=args.seed)
            # A private cache, so the user's file-hash memo does not collect temporary paths.
            lm = load_causal_lm(str(path), device=device, dtype=args.dtype, cache=Path(tmp) / "cache")
            chat = ChatbotConfig(format="dpg")
            label, random_weights = f"{RANDOM_GPT2} (GPT2Config(), seed {args.seed})", True
        else:
            lm = load_causal_lm(args.model, device=device, dtype=args.dtype)
            chat = ChatbotConfig()
            label, random_weights = args.model, False
        scorer = load_scorer(args.classifier, device=str(lm.device))
        report = run_benchmark(lm, scorer, settings, chat, model_label=label, random_weights=random_weights)
    for line in format_report(report):
        print(line)
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
