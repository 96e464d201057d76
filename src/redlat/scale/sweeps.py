"""Experiment sweeps cell by cell, in this process or as Ray tasks (`redlat experiment ... --ray`).

A sweep's work per seed is one base step (the model every setting of that seed starts from: a poisoned classifier, a
chat model with planted trojans) and then one step per setting (a defence), each giving a `CellResult`. In-process,
the steps run one after another. On Ray, every step is a task: a seed's setting tasks take its base task's output as
an argument, so Ray starts them when it is ready and places them where it likes; the driver writes each result to the
experiment store as soon as it arrives, so an interrupted sweep resumes with its finished cells kept. A task lost with
its worker is retried by Ray (`max_restarts`); the steps are seeded, so a retry gives the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from redlat.config import RaySettings

Spec = TypeVar("Spec")


@dataclass(frozen=True)
class CellResult:
    """One (setting, seed) cell of an experiment, ready for `RunStore.write_result`."""

    setting: str
    seed: int
    metrics: dict[str, float]
    description: dict[str, Any]
    logs: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SeedWork(Generic[Spec]):
    """What is left of one seed: the settings still to run (the base step runs whenever any cell of the seed is
    missing; it returns its own results only when those are missing too)."""

    seed: int
    settings: Sequence[Spec]


BaseStep = Callable[[int], tuple[Any, list[CellResult]]]  # seed -> (what the settings start from, base results)
SettingStep = Callable[[Any, Any, int], CellResult]  # (base output, setting, seed) -> result


def run_cells(
    work: Sequence[SeedWork[Any]],
    base: BaseStep,
    setting: SettingStep,
    write: Callable[[CellResult], None],
    ray_settings: RaySettings | None = None,
) -> None:
    """Run every seed's base step and settings, writing each result as it is done: in order here, or on Ray."""
    if ray_settings is not None and ray_settings.enabled:
        _run_on_ray(work, base, setting, write, ray_settings)
        return
    for item in work:
        start, results = base(item.seed)
        for result in results:
            write(result)
        for spec in item.settings:
            write(setting(start, spec, item.seed))


def _run_on_ray(
    work: Sequence[SeedWork[Any]],
    base: BaseStep,
    setting: SettingStep,
    write: Callable[[CellResult], None],
    settings: RaySettings,
) -> None:
    from redlat.scale.ray_cluster import check_fits, connected, task_options, worker_errors

    with connected(settings) as cluster:
        check_fits(cluster, settings, count=1)
        ray = __import__("ray")
        options = task_options(settings)
        base_task = ray.remote(**options, num_returns=2)(with_threads(base, settings.threads))
        setting_task = ray.remote(**options)(with_threads(setting, settings.threads))
        pending = []
        for item in work:
            start, results = base_task.remote(item.seed)
            pending.append(results)
            pending += [setting_task.remote(start, spec, item.seed) for spec in item.settings]
        with worker_errors():
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                value = ray.get(ready[0])
                for result in value if isinstance(value, list) else [value]:
                    write(result)


def with_threads(step: Callable[..., Any], threads: int) -> Callable[..., Any]:
    """The step, run with `threads` torch threads (a Ray task would otherwise take every core of its node)."""

    def run(*args: Any) -> Any:
        import torch

        torch.set_num_threads(threads)
        return step(*args)

    return run
