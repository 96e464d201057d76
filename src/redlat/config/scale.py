"""Where a command's work runs: in this process, or on a Ray cluster (`--ray`). Shared by `redteam` and the
experiment sweeps. These settings never change results, so they are left out of a run's identity: a run started
without Ray resumes with it, and the other way round."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from redlat.config.base import _Frozen


class RaySettings(_Frozen):
    """Ray workers: how many, with which resources, and which cluster (none: a local instance is started)."""

    enabled: bool = Field(default=False, description="run the work on Ray workers (--ray)")
    address: str | None = Field(
        default=None,
        description="cluster to join (host:port, ray://host:port, or auto); none: $RAY_ADDRESS, else start a local one",
    )
    workers: int = Field(default=1, ge=1, description="Ray actors, each with its own copy of the models")
    cpus_per_worker: float = Field(default=1.0, gt=0, description="CPUs Ray reserves for each worker")
    gpus_per_worker: float = Field(default=0.0, ge=0, description="GPUs (or a fraction of one) for each worker")
    threads_per_worker: int | None = Field(
        default=None, ge=1, description="torch threads in each worker; default: its CPUs, rounded down, at least 1"
    )
    max_restarts: int = Field(
        default=3, ge=0, description="times Ray restarts a worker that died (its unfinished task is retried)"
    )
    start_timeout: float = Field(
        default=900.0, gt=0, description="seconds to wait for the workers to load their models before giving up"
    )

    @model_validator(mode="after")
    def _address_means_enabled(self) -> RaySettings:
        if self.address is not None and not self.enabled:
            object.__setattr__(self, "enabled", True)
        return self

    @property
    def threads(self) -> int:
        return self.threads_per_worker or max(1, int(self.cpus_per_worker))


class Scalable(_Frozen):
    """Base of the configs of commands that can run on Ray: the `ray` section, left out of the identity."""

    ray: RaySettings = Field(
        default=RaySettings(), description="Ray workers (--ray); not part of the identity: results are the same"
    )

    def identity(self) -> dict[str, Any]:
        """Everything but where the work runs: the same results in-process and on any Ray cluster."""
        return {k: v for k, v in super().identity().items() if k != "ray"}
