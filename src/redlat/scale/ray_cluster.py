"""Joining a Ray cluster (or starting a local one) with a fast, clear failure when it cannot be reached, and the
actor options every redlat worker shares. Ray is imported only here and only when asked for."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redlat.errors import ConfigError, RedlatError

if TYPE_CHECKING:
    from redlat.config import RaySettings

INSTALL_HINT = "pip install 'redlat[ray]' (or pip install ray)"
CONNECT_TIMEOUT = 5.0  # seconds to open a TCP connection to a cluster's address before calling it unreachable
PASSED_ENV = ("REDLAT_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")  # the driver's, for the workers


class ClusterUnreachableError(RedlatError):
    """The Ray cluster named by --ray-address (or RAY_ADDRESS) does not answer."""


@dataclass(frozen=True)
class Cluster:
    """A connected Ray runtime: where, how big, and whether we started it (then we shut it down afterwards)."""

    address: str
    started_here: bool
    nodes: int
    cpus: float
    gpus: float

    def describe(self) -> dict[str, Any]:
        return {"address": self.address, "started_here": self.started_here, "nodes": self.nodes, "cpus": self.cpus,
                "gpus": self.gpus}


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from exc
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """host and port of "host:port" or "ray://host:port"; None for "auto", "local" and other forms Ray resolves."""
    bare = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = bare.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise ClusterUnreachableError at once when nothing listens at `address` (Ray itself would retry for minutes)."""
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout):
            return
    except OSError as exc:
        raise ClusterUnreachableError(
            f"cannot reach the Ray cluster at {address} ({exc}). Start one with `ray start --head` on the head node "
            "and pass the address it prints (--ray-address HOST:6379), or leave the address out to start a local Ray "
            "instance. Nothing was run."
        ) from exc


@contextlib.contextmanager
def connected(settings: RaySettings) -> Iterator[Cluster]:
    """Ray, initialised for the duration: an already initialised runtime is used as it is; else the cluster at
    settings.address or $RAY_ADDRESS is joined; else a local instance is started (and shut down afterwards)."""
    ray = import_ray()
    if ray.is_initialized():
        yield _describe(ray, started_here=False, address="(already initialised)")
        return
    address = settings.address or os.environ.get("RAY_ADDRESS") or None
    if address == "local":
        address = None
    if address is not None:
        check_reachable(address)
    env = {key: os.environ[key] for key in PASSED_ENV if key in os.environ}
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            logging_level="ERROR",
            runtime_env={"env_vars": env} if env else None,
        )
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        raise ClusterUnreachableError(f"cannot start or join Ray (address {address or 'local'}): {exc}") from exc
    try:
        yield _describe(ray, started_here=address is None, address=address or "local")
    finally:
        ray.shutdown()


def _describe(ray: Any, *, started_here: bool, address: str) -> Cluster:
    resources = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return Cluster(address=address, started_here=started_here, nodes=nodes, cpus=float(resources.get("CPU", 0)),
                   gpus=float(resources.get("GPU", 0)))


def check_fits(cluster: Cluster, settings: RaySettings, *, count: int | None = None) -> None:
    """Refuse at once a request the cluster can never satisfy (Ray would wait for it forever): `count` workers
    (default settings.workers) of the given size."""
    count = settings.workers if count is None else count
    cpus = count * settings.cpus_per_worker
    gpus = count * settings.gpus_per_worker
    if cpus > cluster.cpus + 1e-9 or gpus > cluster.gpus + 1e-9:
        raise ConfigError(
            f"{count} Ray worker{'s' if count != 1 else ''} with {settings.cpus_per_worker:g} CPUs and "
            f"{settings.gpus_per_worker:g} GPUs each need {cpus:g} CPUs and {gpus:g} GPUs; the cluster has "
            f"{cluster.cpus:g} and {cluster.gpus:g}. Ask for fewer workers or smaller ones (--ray-workers, "
            "--ray-cpus-per-worker, --ray-gpus-per-worker)."
        )


class WorkerLostError(RedlatError):
    """A Ray worker died more often than Ray may restart it (or retry its task)."""


@contextlib.contextmanager
def worker_errors() -> Iterator[None]:
    """Errors from Ray calls as the user should see them: the worker's own exception (a bad model name, say), not
    Ray's wrapper; a worker that stayed dead as WorkerLostError, saying that the run resumes."""
    from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

    try:
        yield
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        raise (cause if isinstance(cause, BaseException) else exc) from None
    except (RayActorError, WorkerCrashedError) as exc:
        cause = getattr(exc, "cause", None)  # an actor whose constructor raised carries that error
        if isinstance(cause, RayTaskError) and isinstance(getattr(cause, "cause", None), BaseException):
            raise cause.cause from None
        raise WorkerLostError(
            f"a Ray worker died and Ray could not restart it or retry its work ({type(exc).__name__}); everything "
            "finished before it is stored: run the same command again to resume"
        ) from exc


def task_options(settings: RaySettings) -> dict[str, Any]:
    """Resources of one Ray task, and Ray's retries of a task whose worker died."""
    return {"num_cpus": settings.cpus_per_worker, "num_gpus": settings.gpus_per_worker,
            "max_retries": settings.max_restarts}


def actor_options(settings: RaySettings) -> dict[str, Any]:
    """Resources, and Ray's own fault tolerance: a worker that dies is restarted and its unfinished call retried."""
    return {
        "num_cpus": settings.cpus_per_worker,
        "num_gpus": settings.gpus_per_worker,
        "max_restarts": settings.max_restarts,
        "max_task_retries": settings.max_restarts,
    }
