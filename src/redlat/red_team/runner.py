"""The red-team run, the same for every method: load, check or resume, let the method prepare, play rounds, finish.

Work proceeds in rounds (red_team/rounds.py). A round takes up to `red_generation.batch_size` candidates from the
method, puts its new unique test cases to the target, scores the replies, and commits all of it in one transaction.
Every random draw is seeded from the run seed and the round number, so a run resumed after an interruption produces
what an uninterrupted run would have. The method (red_team/method.py) is the only method-specific part.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redlat import provenance
from redlat.config import RedTeamConfig
from redlat.engines import make_sampler
from redlat.errors import ConfigError, RunDirMismatchError
from redlat.generation import SamplingSettings
from redlat.red_team.method import Method, PrepareContext, method_class
from redlat.red_team.rounds import RoundPlan, RoundResult, RunCounts, play_round
from redlat.scoring.base import harm_of
from redlat.store import DB_NAME, RunStore

if TYPE_CHECKING:
    from redlat.chatbot import Chatbot
    from redlat.engines import TextSampler
    from redlat.models.causal_lm import LoadedLM
    from redlat.scale.ray_rounds import RayWorkers
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
                {"name": s.name, "label": s.label, "labels": list(s.labels), "weights": s.weights,
                 "harm": harm_of(s)}
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


def load_components(cfg: RedTeamConfig, method: Method | None = None, *, red: str | None = None) -> Components:
    """Load the red LM (`red`, else the method's, else cfg.red; none for methods without one), the target and the
    scorers. The target shares the red LM's weights when they are the same model, unless the method trains its red LM.
    """
    from redlat.chatbot import Chatbot
    from redlat.device import resolve_device
    from redlat.engines import check_engine
    from redlat.models.causal_lm import load_causal_lm
    from redlat.scoring import load_scorer

    start = time.perf_counter()
    check_engine(cfg.engine, cfg.device)  # a missing engine library fails before any weights are loaded
    if cfg.chatbot.prompt_file is not None:
        from redlat.chatbot import load_dialogue_prompt

        load_dialogue_prompt(cfg.chatbot.prompt_file)  # fail on a bad prompt file before loading any weights
    kind = type(method) if method is not None else method_class(cfg.method)
    needs_red, trains_red = kind.uses_red(cfg.method_settings), kind.trains_red
    # the scorers first: a bad label, option or judge template fails before the large models load
    scorers = [
        load_scorer(spec.name, label=spec.label, device=str(resolve_device(cfg.device)),
                    batch_size=cfg.classifier_batch_size, options=spec.options)
        for spec in cfg.classifiers
    ]
    red_name = red or (method.red_model() if method is not None else None) or cfg.red
    red_lm = load_causal_lm(red_name, device=cfg.device, dtype=cfg.dtype) if needs_red else None
    shared = red_lm is not None and red_name == cfg.target and not trains_red
    target = red_lm if shared and red_lm is not None else load_causal_lm(cfg.target, device=cfg.device, dtype=cfg.dtype)
    chatbot = Chatbot(target, cfg.chatbot, cfg.target_generation, engine=cfg.engine)
    components = Components(red=red_lm, chatbot=chatbot, scorers=scorers, load_seconds=time.perf_counter() - start)
    return with_method_scorers(components, method) if method is not None else components


def with_method_scorers(components: Components, method: Method) -> Components:
    """The components with the method's own judges in front (once: a judge of the same name is not added again)."""
    have = {scorer.name for scorer in components.scorers}
    own = [scorer for scorer in method.scorers() if scorer.name not in have]
    return replace(components, scorers=[*own, *components.scorers]) if own else components


def make_method(cfg: RedTeamConfig, run_dir: str | Path) -> Method:
    """The method the config names, ready to propose (a bad --from or prompt file fails here, before any model)."""
    return method_class(cfg.method)(cfg, Path(run_dir))


def run_identity(cfg: RedTeamConfig, method: Method) -> dict[str, Any]:
    """What a resumed run must match: the config's identity, plus the content hashes of the method's inputs."""
    inputs = method.inputs()
    return {**cfg.identity(), "inputs": inputs} if inputs else cfg.identity()


def fingerprint(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def check_resumable(run_dir: Path, identity: dict[str, Any]) -> bool:
    """True if run_dir holds a run of this identity; raise if it holds a different one; False if it is new."""
    if not (run_dir / DB_NAME).exists():
        return False
    with RunStore(run_dir) as store:
        if not store.has_run():
            return False
        info = store.run_info()
    if info.fingerprint == fingerprint(identity):
        return True
    differences = _differences(info.config, identity)
    inputs_changed = any(d.startswith("inputs.") for d in differences)
    raise RunDirMismatchError(
        f"{run_dir} holds a run made with a different config, so it cannot be resumed with this one "
        f"(differences, stored -> given: {'; '.join(differences)}). "
        + ("The method's inputs (its pool or prompt file) changed since the run began. " if inputs_changed else "")
        + "Use a new --run-dir, or repeat the original settings to resume. The stored run was not changed."
    )


def _complete_run(run_dir: Path, cfg: RedTeamConfig) -> RunStore | None:
    """The store of a finished run of this config (its inputs need not be read again), else None."""
    if not (run_dir / DB_NAME).exists():
        return None
    store = RunStore(run_dir)
    if store.has_run():
        info = store.run_info()
        stored = {k: v for k, v in info.config.items() if k != "inputs"}
        if info.status == "complete" and stored == cfg.identity():
            return store
    store.close()
    return None


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
    done = _complete_run(run_dir, cfg)
    if done is not None:
        with done:
            log.info("%s is already complete; nothing to do", run_dir)
            return RunResult(run_dir=run_dir, resumed=True, summary=summarize(done))
    method = make_method(cfg, run_dir)  # a bad --from, pool or prompt file fails here, before any model is loaded
    identity = run_identity(cfg, method)
    resumed = check_resumable(run_dir, identity)
    on_ray = cfg.ray.enabled
    if on_ray and components is not None:
        raise ConfigError("with --ray the workers load the models themselves; do not pass components")
    # The driver loads models only when it needs them: always in-process; on Ray only for a method that prepares
    # (trains its red LM) first. Otherwise the workers load them and the first one describes them.
    prepares_here = not on_ray or _has_own_prepare(method)
    with contextlib.ExitStack() as stack:
        workers: RayWorkers | None = None
        if components is None and prepares_here:
            components = load_components(cfg, method)
        elif components is not None:
            components = with_method_scorers(components, method)
        if components is not None and method.trains_red and components.red is not None \
                and components.red.model is components.chatbot.lm.model:
            components = replace(components, red=_separate_copy(components.red))  # training must not touch the target
        if components is None:
            workers = stack.enter_context(_ray_workers(cfg, run_dir))
            described = workers.describe()
        else:
            described = describe_components(cfg, components)
        prov = provenance.collect(described["models"])
        prov["method"] = method.describe()
        prov["generation"] = described["generation"]
        with RunStore(run_dir, create=True) as store:
            if resumed:
                store.record_resume(prov)
            else:
                store.start_run(
                    run_id=uuid.uuid4().hex,
                    command="redteam",
                    method=cfg.method,
                    config=identity,
                    fingerprint=fingerprint(identity),
                    seed=cfg.seed,
                    provenance=prov,
                )
            if on_start is not None:
                on_start(run_dir, resumed)
            if components is not None:
                components = method.prepare(PrepareContext(run_dir, store, components, progress=progress is not None))
            if on_ray and workers is None:
                components = None  # the workers load their own copies (a trained red LM from the run directory)
                workers = stack.enter_context(_ray_workers(cfg, run_dir))
            _record_execution(store, workers.execution() if workers is not None else {"kind": "in-process"})
            _RoundLoop(cfg, store, components, method, progress, workers).run()
            return RunResult(run_dir=run_dir, resumed=resumed, summary=summarize(store))


def describe_components(cfg: RedTeamConfig, components: Components) -> dict[str, Any]:
    """What the run's provenance records about its models: what they are, and every decoding setting as generate()
    resolves it against each model's own config."""
    return {
        "models": components.describe(),
        "generation": {
            "red": red_sampler(cfg, components.red).effective_settings()
            if components.red is not None
            else None,
            "target": components.chatbot.sampler.effective_settings(),
        },
    }


def _has_own_prepare(method: Method) -> bool:
    return type(method).prepare is not Method.prepare


@contextlib.contextmanager
def _ray_workers(cfg: RedTeamConfig, run_dir: Path) -> Iterator[RayWorkers]:
    from redlat.scale.ray_rounds import ray_workers

    # A fresh, model-free method for the workers (what it read, a pool or a prompt file, travels with it); a trained
    # red LM is found by it in the run directory.
    with ray_workers(cfg, make_method(cfg, run_dir)) as workers:
        yield workers


def _record_execution(store: RunStore, entry: dict[str, Any]) -> None:
    """Where each process of the run played its rounds (in-process, or Ray with which workers), in order."""
    store.set_meta("execution", [*(store.get_meta("execution") or []), entry])


def _separate_copy(lm: LoadedLM) -> LoadedLM:
    import copy

    return replace(lm, model=copy.deepcopy(lm.model), tokenizer=copy.deepcopy(lm.tokenizer))


def red_sampler(cfg: RedTeamConfig, lm: LoadedLM) -> TextSampler:
    """The red LM's sampler on the run's engine."""
    return make_sampler(lm, red_sampling_settings(cfg), batch_size=cfg.red_generation.batch_size, engine=cfg.engine)


def red_sampling_settings(cfg: RedTeamConfig) -> SamplingSettings:
    gen = cfg.red_generation
    return SamplingSettings(top_p=gen.top_p, temperature=gen.temperature, max_new_tokens=gen.max_new_tokens)


class _RoundLoop:
    def __init__(
        self,
        cfg: RedTeamConfig,
        store: RunStore,
        parts: Components | None,
        method: Method,
        progress: ProgressFactory | None,
        workers: RayWorkers | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.parts = parts
        self.progress_factory = progress
        self.run_id = store.run_info().run_id
        self.method = method
        self.workers = workers
        capacity = method.capacity()
        self.plan = RoundPlan(
            n=cfg.n,
            batch_size=cfg.red_generation.batch_size,
            sample_cap=cfg.sample_cap,
            available=capacity if capacity is not None else math.inf,
        )
        self.stage_seconds = {"red": 0.0, "target": 0.0, "score": 0.0, "store": 0.0}

    def _local_rounds(self, counts: RunCounts) -> Iterator[RoundResult]:
        parts = self.parts
        assert parts is not None
        red = red_sampler(self.cfg, parts.red) if parts.red is not None else None
        while self.plan.more(counts.n_samples, counts.n_unique):
            result = play_round(
                self.cfg, self.method, parts, red, round_=counts.round,
                k=self.plan.size(counts.n_samples, counts.n_unique), first_index=counts.n_samples,
                n_unique=counts.n_unique, seen=counts.seen, run_id=self.run_id,
            )
            counts.advance(result.samples, [a.test_case for a in result.attempts])
            yield result

    def run(self) -> None:
        cfg, store = self.cfg, self.store
        stored = store.counts()
        n_samples, n_unique, n_offensive = stored.n_samples, stored.n_unique, stored.n_offensive
        counts = RunCounts(round=store.next_round(), n_samples=n_samples, n_unique=n_unique,
                           seen=set(store.seen_test_cases()))
        first_round = counts.round
        rounds = (
            self.workers.rounds(self.plan, counts, self.run_id)
            if self.workers is not None
            else self._local_rounds(counts)
        )
        bar = self.progress_factory(cfg.n, n_unique) if self.progress_factory else None
        started = time.perf_counter()
        t_round = started
        try:
            for round_, result in enumerate(rounds, start=first_round):
                t_store = time.perf_counter()
                store.write_round(round_, result.samples, result.attempts, t_store - t_round)
                t_round = time.perf_counter()
                self.stage_seconds["store"] += t_round - t_store
                for stage, secs in result.seconds.items():
                    self.stage_seconds[stage] += secs
                n_samples += len(result.samples)
                n_unique += len(result.attempts)
                n_offensive += sum(a.offensive for a in result.attempts)
                if bar is not None:
                    bar.set_postfix(samples=n_samples, offensive=n_offensive, refresh=False)
                    bar.update(len(result.attempts))
        finally:
            if bar is not None:
                bar.close()
        timings = {
            **store.run_info().timings,
            **store.timings(),
            "load_seconds": self.parts.load_seconds if self.parts is not None else 0.0,
            "loop_seconds_this_process": time.perf_counter() - started,
            **{f"{stage}_seconds_this_process": secs for stage, secs in self.stage_seconds.items()},
        }
        store.finish_run(self.plan.stop_reason(n_samples, n_unique), timings)
