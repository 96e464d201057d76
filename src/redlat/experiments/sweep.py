"""The loop every trojan sweep shares: find the (setting, seed) cells a run directory lacks, run each missing seed's
reference step and its missing settings (here or on Ray, redlat.scale.sweeps), and store each cell as it finishes,
with a line and a progress-bar tick. An experiment supplies only its steps and how a finished cell reads."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from redlat.config.scale import RaySettings
from redlat.scale.sweeps import BaseStep, CellResult, SeedWork, SettingStep, run_cells
from redlat.store import RunStore

log = logging.getLogger(__name__)

Progress = Callable[[str], None]  # receives one line per finished (setting, seed)
BarFactory = Callable[[int, int], Any]  # (total, already done) -> a tqdm-like bar with update() and close()
Done = frozenset[tuple[str, int]]  # the (setting, seed) cells already stored


class Named(Protocol):
    @property
    def name(self) -> str: ...


def run_sweep(
    store: RunStore,
    *,
    seeds: Sequence[int],
    references: Sequence[str],
    settings: Sequence[Named],
    steps: Callable[[Done], tuple[BaseStep, SettingStep]],
    line: Callable[[CellResult], str],
    ray: RaySettings | None = None,
    progress: Progress | None = None,
    bar: BarFactory | None = None,
    on_bar: Callable[[Any], None] | None = None,
) -> RunStore:
    """Run (or resume) a sweep into an open store and mark the run complete; returns the store (the caller closes it;
    on any error it is closed here). `references` are the settings each seed's base step measures (the model before
    any defence); `steps` builds the base and setting steps from the cells already done, and is called only when some
    cell is missing, so a finished run loads nothing."""
    progress_bar = None
    try:
        done = store.completed_results()
        names = [*references, *(s.name for s in settings)]
        cells = {(name, seed) for seed in seeds for name in names}
        if bar is not None:
            progress_bar = bar(len(cells), len(cells & done))
            if on_bar is not None:
                on_bar(progress_bar)
        started = time.perf_counter()
        work = [
            SeedWork(seed, [s for s in settings if (s.name, seed) not in done])
            for seed in seeds
            if not all((name, seed) in done for name in names)
        ]

        def write(result: CellResult) -> None:
            store.write_result(result.setting, result.seed, result.metrics, result.description, result.logs)
            text = line(result)
            log.info(text)
            if progress is not None:
                progress(text)
            if progress_bar is not None:
                progress_bar.update(1)

        if work:
            base_step, setting_step = steps(frozenset(done))
            run_cells(work, base_step, setting_step, write, ray)
        store.finish_run("complete", {"seconds": time.perf_counter() - started})
        return store
    except BaseException:
        store.close()
        raise
    finally:
        if progress_bar is not None:
            progress_bar.close()
