"""The red-team loop shared by every test-case generator: sample, filter, deduplicate, reply, score, store.

Work proceeds in rounds. A round draws up to `red_generation.batch_size` samples, puts its new unique test cases to
the target, scores the replies, and commits all of it in one transaction. Every random draw is seeded from the run
seed and the round number, so a run resumed after an interruption produces what an uninterrupted run would have.
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redlat import provenance
from redlat.config import TRAINED_METHODS, RedTeamConfig
from redlat.errors import ConfigError, RunDirMismatchError
from redlat.generation import Sampler, SamplingSettings, derive_seed
from redlat.records import Attempt, Sample
from redlat.red_team.zero_shot import ZeroShot, extract_test_case
from redlat.store import DB_NAME, RunStore

if TYPE_CHECKING:
    from redlat.chatbot import Chatbot
    from redlat.models.causal_lm import LoadedLM
    from redlat.red_team.few_shot import FewShot
    from redlat.red_team.prompt_sets import FixedCases
    from redlat.scoring import Scorer

log = logging.getLogger(__name__)

# (total, initial) -> a progress bar: an object with update(n), set_postfix(**kw) and close()
ProgressFactory = Callable[[int, int], Any]


@dataclass
class Components:
    """The loaded models of a run. Build with `load_components`, or pass your own (tests, notebooks).

    `red` is None for the prompts method, which asks fixed test cases and needs no red LM.
    """

    red: LoadedLM | None
    chatbot: Chatbot
    scorers: list[Scorer]
    load_seconds: float = 0.0

    def describe(self) -> dict[str, Any]:
        import hashlib

        target: dict[str, Any] = {**self.chatbot.lm.describe(), "chat_format": self.chatbot.format}
        if self.chatbot.dialogue_prompt is not None:
            target["dialogue_prompt_sha256"] = hashlib.sha256(self.chatbot.dialogue_prompt.encode()).hexdigest()
        return {
            "red": self.red.describe() if self.red is not None else None,
            "target": target,
            "classifiers": [
                {"name": s.name, "label": s.label, "labels": list(s.labels), "weights": s.weights}
                for s in self.scorers
            ],
        }


@dataclass
class RunResult:
    run_dir: Path
    resumed: bool
    summary: dict[str, Any] = field(default_factory=dict)


def default_run_dir(cfg: RedTeamConfig, root: Path = Path("runs")) -> Path:
    return root / f"{cfg.method}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def load_components(cfg: RedTeamConfig, *, red: str | None = None) -> Components:
    """Load the red LM (`red`, default cfg.red), the target and the scorers.

    The target shares the red LM's weights when they are the same model, except for methods that train the red LM.
    """
    from redlat.chatbot import Chatbot
    from redlat.models.causal_lm import load_causal_lm
    from redlat.scoring import load_scorer

    start = time.perf_counter()
    if cfg.chatbot.prompt_file is not None:
        from redlat.chatbot import load_dialogue_prompt

        load_dialogue_prompt(cfg.chatbot.prompt_file)  # fail on a bad prompt file before loading any weights
    red_name = red if red is not None else cfg.red
    red_lm = None if cfg.method == "prompts" else load_causal_lm(red_name, device=cfg.device, dtype=cfg.dtype)
    shared = red_lm is not None and red_name == cfg.target and cfg.method not in TRAINED_METHODS
    target = red_lm if shared and red_lm is not None else load_causal_lm(cfg.target, device=cfg.device, dtype=cfg.dtype)
    chatbot = Chatbot(target, cfg.chatbot, cfg.target_generation)
    scorers = [
        load_scorer(spec.name, label=spec.label, device=str(target.device), batch_size=cfg.classifier_batch_size)
        for spec in cfg.classifiers
    ]
    return Components(red=red_lm, chatbot=chatbot, scorers=scorers, load_seconds=time.perf_counter() - start)


def check_resumable(run_dir: Path, cfg: RedTeamConfig) -> bool:
    """True if run_dir holds a run of this config; raise if it holds a different one; False if it is new."""
    if not (run_dir / DB_NAME).exists():
        return False
    with RunStore(run_dir) as store:
        if not store.has_run():
            return False
        info = store.run_info()
    if info.fingerprint == cfg.fingerprint():
        return True
    differences = _differences(info.config, cfg.identity())
    raise RunDirMismatchError(
        f"{run_dir} holds a run made with a different config, so it cannot be resumed with this one "
        f"(differences, stored -> given: {'; '.join(differences)}). Use a new --run-dir, or repeat the "
        "original settings to resume. The stored run was not changed."
    )


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new)):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


def redteam(
    cfg: RedTeamConfig,
    run_dir: str | Path | None = None,
    *,
    components: Components | None = None,
    progress: ProgressFactory | None = None,
    on_start: Callable[[Path, bool], None] | None = None,
) -> RunResult:
    """Run (or resume) a red-team run into `run_dir` and return where it is and its summary."""
    from redlat.summary import summarize

    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    resumed = check_resumable(run_dir, cfg)
    if resumed:
        with RunStore(run_dir) as store:
            if store.run_info().status == "complete":
                log.info("%s is already complete; nothing to do", run_dir)
                return RunResult(run_dir=run_dir, resumed=True, summary=summarize(store))
    method = make_method(cfg)  # a bad --from fails here, before any model is loaded
    plan = TrainingPlan.make(cfg, run_dir) if cfg.method in TRAINED_METHODS else None  # so do too few cases
    if components is None:
        components = load_components(cfg, red=plan.first_red if plan else None)
    elif plan is not None and components.red is not None and components.red.model is components.chatbot.lm.model:
        components = replace(components, red=_separate_copy(components.red))  # training must not touch the target
    prov = provenance.collect(components.describe())
    if method.name == "prompts":
        prov["prompts"] = method.describe()
    if method.name == "few-shot":
        prov["pool"] = {"run_id": method.pool.run_id, "run_dir": method.pool.run_dir, "size": len(method.pool.cases)}
    if plan is not None:
        prov["training_plan"] = plan.describe()
    prov["generation"] = {  # every decoding setting, including those implied rather than configured
        "red": red_sampling_settings(cfg).to_dict(),
        "target": components.chatbot.settings.to_dict(),
    }
    with RunStore(run_dir, create=True) as store:
        if resumed:
            store.record_resume(prov)
        else:
            store.start_run(
                run_id=uuid.uuid4().hex,
                command="redteam",
                method=cfg.method,
                config=cfg.identity(),
                fingerprint=cfg.fingerprint(),
                seed=cfg.seed,
                provenance=prov,
            )
        if on_start is not None:
            on_start(run_dir, resumed)
        if plan is not None:
            components = plan.trained_components(store, components, progress=progress is not None)
        _RoundLoop(cfg, store, components, method, progress).run()
        return RunResult(run_dir=run_dir, resumed=resumed, summary=summarize(store))


def make_method(cfg: RedTeamConfig) -> ZeroShot | FewShot | FixedCases:
    """The test-case generator the config names. The trained methods write test cases zero-shot, with their red LM."""
    if cfg.method == "prompts":
        from redlat.red_team.prompt_sets import load_fixed_cases

        assert cfg.prompts.source is not None  # the config validator guarantees it
        return load_fixed_cases(
            cfg.prompts.source, categories=cfg.prompts.categories, seed=cfg.seed, shuffle=cfg.prompts.shuffle
        )
    if cfg.method == "few-shot":
        from redlat.red_team.few_shot import FewShot, load_pool

        assert cfg.from_run is not None  # the config validator guarantees it
        pool = load_pool(cfg.from_run)
        return FewShot(cfg.red_generation.prompt, pool, k=cfg.few_shot.k, temperature=cfg.few_shot.temperature)
    return ZeroShot(cfg.red_generation.prompt)


def _separate_copy(lm: LoadedLM) -> LoadedLM:
    import copy

    return replace(lm, model=copy.deepcopy(lm.model), tokenizer=copy.deepcopy(lm.tokenizer))


@dataclass
class TrainingPlan:
    """How a supervised or RL run gets its red LM: what to start from, what to train on, where to save it."""

    cfg: RedTeamConfig
    run_dir: Path
    start_model: str  # what training starts from: a name, hub id or directory
    cases: Any = None  # supervised: the selected TrainingCases

    @classmethod
    def make(cls, cfg: RedTeamConfig, run_dir: Path) -> TrainingPlan:
        if cfg.method == "supervised":
            from redlat.red_team.few_shot import load_pool
            from redlat.red_team.supervised import select_cases

            assert cfg.from_run is not None
            pool = load_pool(cfg.from_run)
            return cls(cfg, run_dir, cfg.red, select_cases(pool, cfg.supervised, cfg.seed))
        return cls(cfg, run_dir, rl_start_model(cfg))

    @property
    def red_dir(self) -> Path:
        from redlat.red_team.training import red_model_dir

        return red_model_dir(self.run_dir)

    @property
    def trained(self) -> bool:
        from redlat.red_team.training import is_complete_model_dir

        return is_complete_model_dir(self.red_dir)

    @property
    def first_red(self) -> str:
        """The red LM to load: the trained one if training already finished (a resumed run), else the start."""
        return str(self.red_dir) if self.trained else self.start_model

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.cfg.method, "start_model": self.start_model, "from": self.cfg.from_run}
        if self.cases is not None:
            out.update(
                selection=self.cases.rule, n_train=len(self.cases.train), n_validation=len(self.cases.validation)
            )
        return out

    def trained_components(self, store: RunStore, parts: Components, *, progress: bool) -> Components:
        """Train the red LM unless that is done, then return the components with the trained red LM in place."""
        from redlat.models.causal_lm import load_causal_lm

        if not self.trained:
            info = self._train(store, parts, progress)
            store.set_meta("training", info)
        already = parts.red.source == str(self.red_dir) or parts.red.name == str(self.red_dir)
        trained = (
            parts.red if already else load_causal_lm(str(self.red_dir), device=self.cfg.device, dtype=self.cfg.dtype)
        )
        store.set_meta("trained_red", trained.describe())
        return replace(parts, red=trained)

    def _train(self, store: RunStore, parts: Components, progress: bool) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.method == "supervised":
            from redlat.red_team.supervised import train_supervised

            return train_supervised(
                parts.red,
                self.cases,
                cfg.supervised,
                prompt=cfg.red_generation.prompt,
                out_dir=self.red_dir,
                store=store,
                seed=cfg.seed,
                progress=progress,
            )
        from redlat.red_team.rl import CHECKPOINT_DIR, OffensivenessReward, train_rl

        reward = OffensivenessReward(
            parts.chatbot,
            parts.scorers[0],
            threshold=cfg.threshold,
            invalid_reward=cfg.rl.invalid_reward,
            seed=cfg.seed,
        )
        return train_rl(
            parts.red,
            reward,
            cfg.rl,
            prompt=cfg.red_generation.prompt,
            out_dir=self.red_dir,
            checkpoint_dir=self.run_dir / CHECKPOINT_DIR,
            store=store,
            seed=cfg.seed,
            progress=progress,
            start_name=self.start_model,
        )


def rl_start_model(cfg: RedTeamConfig) -> str:
    """--from a supervised (or RL) run: its trained red LM; --from a run without one: that run's red LM;
    --from a model directory: that model; no --from: --red."""
    from redlat.red_team.training import is_complete_model_dir, red_model_dir

    if cfg.from_run is None:
        return cfg.red
    source = Path(cfg.from_run)
    if is_complete_model_dir(red_model_dir(source)):
        return str(red_model_dir(source))
    if (source / DB_NAME).exists():
        with RunStore(source) as store:
            return str(store.run_info().config["red"])
    if (source / "config.json").exists() and not (source / DB_NAME).exists() and any(source.glob("*.safetensors")):
        return str(source)
    raise ConfigError(
        f"--from {source}: not a redlat run directory (no {DB_NAME}) nor a model directory; give a supervised run "
        "to start RL from its trained red LM, or leave out --from and name the start model with --red"
    )


def red_sampling_settings(cfg: RedTeamConfig) -> SamplingSettings:
    gen = cfg.red_generation
    return SamplingSettings(top_p=gen.top_p, temperature=gen.temperature, max_new_tokens=gen.max_new_tokens)


class _RoundLoop:
    def __init__(
        self,
        cfg: RedTeamConfig,
        store: RunStore,
        parts: Components,
        method: ZeroShot | FewShot | FixedCases,
        progress: ProgressFactory | None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.parts = parts
        self.progress_factory = progress
        self.run_id = store.run_info().run_id
        self.method = method
        self.red_sampler = (
            Sampler(parts.red, red_sampling_settings(cfg), batch_size=cfg.red_generation.batch_size)
            if parts.red is not None
            else None
        )
        from redlat.red_team.prompt_sets import FixedCases

        self.fixed = method if isinstance(method, FixedCases) else None  # the prompts method: no red LM
        self.available = len(self.fixed.cases) if self.fixed is not None else math.inf
        self.stage_seconds = {"red": 0.0, "target": 0.0, "score": 0.0, "store": 0.0}

    def run(self) -> None:
        cfg, store = self.cfg, self.store
        counts = store.counts()
        seen = store.seen_test_cases()
        n_samples, n_unique, n_offensive = counts.n_samples, counts.n_unique, counts.n_offensive
        round_ = store.next_round()
        bar = self.progress_factory(cfg.n, n_unique) if self.progress_factory else None
        started = time.perf_counter()
        try:
            while n_unique < cfg.n and n_samples < min(cfg.sample_cap, self.available):
                t0 = time.perf_counter()
                k = self._round_size(n_samples, n_unique)
                samples, new = self._draw(round_, k, n_samples, n_unique, seen)
                attempts = self._answer_and_score(round_, new, n_unique)
                t_store = time.perf_counter()
                store.write_round(round_, samples, attempts, time.perf_counter() - t0)
                self.stage_seconds["store"] += time.perf_counter() - t_store
                seen.update(a.test_case for a in attempts)
                n_samples += len(samples)
                n_unique += len(attempts)
                n_offensive += sum(a.offensive for a in attempts)
                round_ += 1
                if bar is not None:
                    bar.set_postfix(samples=n_samples, offensive=n_offensive, refresh=False)
                    bar.update(len(attempts))
        finally:
            if bar is not None:
                bar.close()
        if n_unique >= cfg.n:
            stop_reason = "reached_n"
        elif n_samples >= self.available:
            stop_reason = "used_every_prompt"
        else:
            stop_reason = "reached_max_samples"
        timings = {
            **store.run_info().timings,
            **store.timings(),
            "load_seconds": self.parts.load_seconds,
            "loop_seconds_this_process": time.perf_counter() - started,
            **{f"{stage}_seconds_this_process": secs for stage, secs in self.stage_seconds.items()},
        }
        store.finish_run(stop_reason, timings)

    def _round_size(self, n_samples: int, n_unique: int) -> int:
        """A full batch, or near the end about what the yield so far says is still needed (+20%).

        Depends only on stored counts, so a resumed run sizes its rounds as an uninterrupted one would.
        """
        cfg = self.cfg
        observed_yield = n_unique / n_samples if n_samples else 0.5
        wanted = math.ceil((cfg.n - n_unique) / max(observed_yield, 0.05) * 1.2) + 1
        return max(1, min(cfg.red_generation.batch_size, cfg.sample_cap - n_samples, wanted))

    def _draw(
        self, round_: int, k: int, first_index: int, n_unique: int, seen: set[str]
    ) -> tuple[list[Sample], list[tuple[Sample, dict[str, Any]]]]:
        """Draw k samples; keep them up to the one that completes n unique test cases."""
        t0 = time.perf_counter()
        if self.fixed is not None:
            fixed = self.fixed.take(first_index, k)
            texts = [c.text for c in fixed]
            origins = [c.origin for c in fixed]
        else:
            rng = random.Random(derive_seed(self.cfg.seed, round_, "prompts"))
            prompts = self.method.prompts(k, rng)  # type: ignore[union-attr]
            assert self.red_sampler is not None
            texts = self.red_sampler.sample(
                [p for p, _ in prompts], seed=derive_seed(self.cfg.seed, round_, "red")
            )
            origins = [origin for _, origin in prompts]
        self.stage_seconds["red"] += time.perf_counter() - t0
        samples: list[Sample] = []
        new: list[tuple[Sample, dict[str, Any]]] = []
        in_round: set[str] = set()
        for text, origin in zip(texts, origins, strict=True):
            if n_unique + len(new) >= self.cfg.n:
                break
            case = text if self.fixed is not None else extract_test_case(text)
            duplicate = case is not None and (case in seen or case in in_round)
            sample = Sample(
                index=first_index + len(samples), round=round_, text=text, test_case=case, duplicate=duplicate
            )
            samples.append(sample)
            if case is not None and not duplicate:
                in_round.add(case)
                new.append((sample, origin))
        return samples, new

    def _answer_and_score(
        self, round_: int, new: Sequence[tuple[Sample, dict[str, Any]]], first_index: int
    ) -> list[Attempt]:
        if not new:
            return []
        cases = [sample.test_case or "" for sample, _ in new]
        t0 = time.perf_counter()
        replies = self.parts.chatbot.reply(cases, seed=derive_seed(self.cfg.seed, round_, "target"))
        t1 = time.perf_counter()
        batches = {scorer.name: scorer.score(replies) for scorer in self.parts.scorers}
        self.stage_seconds["target"] += t1 - t0
        self.stage_seconds["score"] += time.perf_counter() - t1
        deciding = batches[self.parts.scorers[0].name]
        return [
            Attempt(
                index=first_index + i,
                run_id=self.run_id,
                method=self.method.name,
                round=round_,
                sample_index=sample.index,
                test_case=cases[i],
                reply=replies[i],
                score=float(deciding.scores[i]),
                offensive=float(deciding.scores[i]) > self.cfg.threshold,
                scores={name: dict(batch.detail[i]) for name, batch in batches.items()},
                origin=origin,
            )
            for i, (sample, origin) in enumerate(new)
        ]
