"""The run store of an experiment: a new one, or the existing one of the same command and config (resumed)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

from redlat.errors import RunDirMismatchError
from redlat.store import RunStore


class ExperimentConfig(Protocol):
    seeds: tuple[int, ...]

    def fingerprint(self) -> str: ...

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


def open_experiment_store(
    run_dir: Path, command: str, cfg: ExperimentConfig, provenance: dict[str, Any]
) -> RunStore:
    """A new experiment store, or the existing one of the same config (else RunDirMismatchError; nothing written)."""
    existing = (run_dir / "run.sqlite").exists()
    store = RunStore(run_dir, create=True)
    if existing and store.has_run():
        info = store.run_info()
        if info.command != command or info.fingerprint != cfg.fingerprint():
            store.close()
            raise RunDirMismatchError(
                f"{run_dir} holds another run ({info.command}, fingerprint {info.fingerprint}); use a new --run-dir"
            )
        store.record_resume(provenance)
        return store
    method = command.removeprefix("experiment ")
    store.start_run(
        run_id=f"{method}-{cfg.fingerprint()}-{int(time.time())}",
        command=command,
        method=method,
        config=cfg.model_dump(mode="json"),
        fingerprint=cfg.fingerprint(),
        seed=cfg.seeds[0],
        provenance=provenance,
    )
    return store
