"""The Ray glue that needs no Ray: addresses, fast failure, fitting requests, round sizing, settings and identity."""

from __future__ import annotations

import socket
import time

import pytest

from redlat.config import RaySettings, RedTeamConfig, TrojansVisionConfig
from redlat.errors import ConfigError
from redlat.red_team.rounds import RoundPlan, RunCounts
from redlat.scale.ray_cluster import Cluster, ClusterUnreachableError, _host_port, check_fits, check_reachable


def test_addresses_parse_to_host_and_port():
    assert _host_port("10.0.0.1:6379") == ("10.0.0.1", 6379)
    assert _host_port("ray://head.example:10001") == ("head.example", 10001)
    assert _host_port("[::1]:6379") == ("::1", 6379)
    assert _host_port("auto") is None and _host_port("local") is None and _host_port("head:") is None


def test_nothing_listening_fails_fast_and_says_what_to_do():
    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    with pytest.raises(ClusterUnreachableError, match=r"ray start --head"):
        check_reachable(f"127.0.0.1:{port}")
    assert time.perf_counter() - start < 10


def test_a_listening_address_passes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        check_reachable(f"127.0.0.1:{s.getsockname()[1]}")


def test_requests_the_cluster_cannot_hold_are_refused():
    cluster = Cluster(address="local", started_here=True, nodes=1, cpus=2.0, gpus=0.0)
    check_fits(cluster, RaySettings(workers=2, cpus_per_worker=1))
    with pytest.raises(ConfigError, match="need 3 CPUs and 0 GPUs; the cluster has 2 and 0"):
        check_fits(cluster, RaySettings(workers=3))
    with pytest.raises(ConfigError, match="GPUs"):
        check_fits(cluster, RaySettings(gpus_per_worker=0.5), count=1)


def test_ray_settings_never_change_a_runs_identity():
    plain = RedTeamConfig()
    on_ray = RedTeamConfig(ray={"address": "head:6379", "workers": 4})
    assert on_ray.ray.enabled  # an address means --ray
    assert on_ray.identity() == plain.identity() and on_ray.fingerprint() == plain.fingerprint()
    assert TrojansVisionConfig(ray={"enabled": True}).fingerprint() == TrojansVisionConfig().fingerprint()
    assert RaySettings(cpus_per_worker=2.5).threads == 2 and RaySettings(threads_per_worker=3).threads == 3


def test_round_plan_sizes_rounds_from_counts_alone():
    plan = RoundPlan(n=10, batch_size=8, sample_cap=40)
    assert plan.size(0, 0) == 8  # a full batch at the start
    assert plan.size(16, 8) == 6  # 2 still needed at yield 0.5: ceil(2 / 0.5 * 1.2) + 1
    assert plan.size(38, 9) == 2  # never past the sample cap
    assert plan.more(16, 8) and not plan.more(20, 10) and not plan.more(40, 9)
    assert plan.stop_reason(20, 10) == "reached_n" and plan.stop_reason(40, 9) == "reached_max_samples"
    assert RoundPlan(n=10, batch_size=8, sample_cap=40, available=12).stop_reason(12, 9) == "used_every_prompt"
    counts = RunCounts(round=3, n_samples=5, n_unique=2, seen={"a?"})
    from redlat.records import Sample

    counts.advance([Sample(index=5, round=3, text="b?", test_case="b?", duplicate=False)], ["b?"])
    assert (counts.round, counts.n_samples, counts.n_unique, counts.seen) == (4, 6, 3, {"a?", "b?"})
