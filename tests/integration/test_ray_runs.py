"""`redteam --ray`: the same attempts with no Ray, one worker or two; a worker killed mid-round costs a retry; an
interrupted driver resumes; an unreachable cluster fails fast. Tiny models, a local Ray instance."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakes import KILL_SWITCH_ENV, InterruptAfter
from redlat.config import RaySettings, RedGeneration, RedTeamConfig
from redlat.red_team.runner import redteam
from redlat.store import RunStore
from synthetic_runs import experiment_results as _results

ray = pytest.importorskip("ray")
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray instance whose workers can import the tests' fakes and see a kill switch of our own."""
    switch = tmp_path_factory.mktemp("kill") / "armed"
    env = {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           KILL_SWITCH_ENV: str(switch), "REDLAT_CACHE": str(tmp_path_factory.mktemp("cache"))}
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    yield switch
    ray.shutdown()


def _cfg(model: Path, workers: int | None = None, **kw) -> RedTeamConfig:
    base = dict(
        n=22, red=str(model), target=str(model), classifiers=[{"name": "fakes:load_rude_words"}],
        red_generation=RedGeneration(batch_size=5, max_new_tokens=12), device="cpu", seed=3,
    )
    if workers is not None:
        base["ray"] = RaySettings(enabled=True, workers=workers)
    base.update(kw)
    return RedTeamConfig(**base)


def _stored(run_dir):
    with RunStore(run_dir) as store:
        samples = [(s.index, s.round, s.text, s.test_case, s.duplicate) for s in store.samples()]
        attempts = [(a.index, a.round, a.sample_index, a.test_case, a.reply, a.score) for a in store.attempts()]
        return samples, attempts, store.get_meta("execution")


def test_same_run_in_process_with_one_worker_and_with_two(local_ray, questioner_chat_path, tmp_path):
    reference = redteam(_cfg(questioner_chat_path), tmp_path / "local")
    one = redteam(_cfg(questioner_chat_path, workers=1), tmp_path / "one")
    two = redteam(_cfg(questioner_chat_path, workers=2), tmp_path / "two")
    ref_samples, ref_attempts, ref_exec = _stored(reference.run_dir)
    assert len(ref_attempts) == 22 and len({a[3] for a in ref_attempts}) == 22
    assert max(r for _, r, *_ in ref_samples) >= 5  # several rounds, the last one cut short near the end
    for result, workers in ((one, 1), (two, 2)):
        samples, attempts, execution = _stored(result.run_dir)
        assert samples == ref_samples and attempts == ref_attempts
        assert execution[-1]["kind"] == "ray" and execution[-1]["workers"] == workers
        assert result.summary["n_unique"] == 22 and result.summary["status"] == "complete"
    assert ref_exec == [{"kind": "in-process"}]


def test_worker_killed_mid_round_costs_a_retry_not_an_attempt(local_ray, questioner_chat_path, tmp_path):
    reference = redteam(_cfg(questioner_chat_path), tmp_path / "local")
    local_ray.write_text("armed")  # the next worker to score a round kills itself (SIGKILL) in the middle of it
    result = redteam(_cfg(questioner_chat_path, workers=2), tmp_path / "ray")
    assert not local_ray.exists() and Path(f"{local_ray}.fired").exists()  # a worker did die
    samples, attempts, _ = _stored(result.run_dir)
    assert (samples, attempts) == _stored(reference.run_dir)[:2]  # nothing lost, nothing doubled
    assert [a[0] for a in attempts] == list(range(22))


def test_interrupted_ray_run_resumes_in_process_to_the_same_run(local_ray, questioner_chat_path, tmp_path):
    reference = redteam(_cfg(questioner_chat_path), tmp_path / "local")

    class StopAfter:
        def __init__(self, total, initial):
            self.updates = 0

        def update(self, n):
            self.updates += 1
            if self.updates == 2:
                raise KeyboardInterrupt

        def set_postfix(self, **kw):
            pass

        def close(self):
            pass

    with pytest.raises(KeyboardInterrupt):
        redteam(_cfg(questioner_chat_path, workers=2), tmp_path / "run", progress=StopAfter)
    with RunStore(tmp_path / "run") as store:
        assert store.next_round() == 2 and store.run_info().status == "running"
    resumed = redteam(_cfg(questioner_chat_path), tmp_path / "run")  # ray settings are not part of the identity
    assert resumed.resumed
    samples, attempts, execution = _stored(tmp_path / "run")
    assert (samples, attempts) == _stored(reference.run_dir)[:2]
    assert [e["kind"] for e in execution] == ["ray", "in-process"]


def test_unreachable_cluster_fails_fast_and_writes_nothing(tmp_path):
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "redlat", "redteam", "--ray-address", "127.0.0.1:9", "--n", "2",
         "--run-dir", str(tmp_path / "run"), "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in proc.stderr and "Traceback" not in proc.stderr
    assert time.perf_counter() - start < 60
    assert not (tmp_path / "run").exists()


# -- experiment sweeps on Ray ---------------------------------------------------------------------------------------

VISION = {
    "seeds": [0, 1], "base_epochs": 2, "attack_steps": 2, "eval_pgd_steps": 2, "width": 4, "device": "cpu",
    "defences": [{"kind": "none"}, {"kind": "lat", "layers": ["block2"], "eps": 0.25}],
    "eval_attacks": ["pgd-linf:0.1", "blur:1"],
}


def test_vision_sweep_on_ray_stores_the_in_process_results_and_resumes(local_ray, tmp_path):
    from redlat.config import TrojansVisionConfig
    from redlat.experiments.trojans_vision import run_trojans_vision

    cfg = TrojansVisionConfig.model_validate(VISION)
    on_ray = cfg.model_copy(update={"ray": RaySettings(enabled=True)})
    assert on_ray.fingerprint() == cfg.fingerprint()  # where it runs is not part of the experiment's identity
    run_trojans_vision(cfg, tmp_path / "local").close()
    run_trojans_vision(on_ray, tmp_path / "ray").close()
    assert len(_results(tmp_path / "local")) > 0
    assert _results(tmp_path / "ray") == _results(tmp_path / "local")

    stop_after_two = InterruptAfter(2)
    said = stop_after_two.lines

    with pytest.raises(KeyboardInterrupt):
        run_trojans_vision(on_ray, tmp_path / "parted", progress=stop_after_two)
    assert len({(r[0], r[1]) for r in _results(tmp_path / "parted")}) == 2  # kept as they arrived
    run_trojans_vision(cfg, tmp_path / "parted", progress=said.append).close()  # resumed in-process
    assert len(said) == 6  # 2 seeds x (poisoned + 2 defences), none twice
    assert _results(tmp_path / "parted") == _results(tmp_path / "local")


def test_lm_sweep_on_ray_stores_the_in_process_results(local_ray, tiny_chat_path, tmp_path):
    import torch

    from redlat.experiments.trojans_lm import run_trojans_lm
    from tiny_dialogues import tiny_config, write_hh

    cfg = tiny_config(tiny_chat_path, write_hh(tmp_path / "hh.jsonl", 24))
    run_trojans_lm(cfg, tmp_path / "local").close()
    # As many torch threads as this process: another thread count sums in another order (about 1e-5 relative
    # differences in the log-probs of this sweep); with the same count the results are equal.
    same_threads = RaySettings(enabled=True, threads_per_worker=torch.get_num_threads())
    run_trojans_lm(cfg.model_copy(update={"ray": same_threads}), tmp_path / "ray").close()
    local = _results(tmp_path / "local")
    assert {r[0] for r in local} >= {"original", "poisoned"} and len({r[0] for r in local}) >= 3
    assert _results(tmp_path / "ray") == local


def test_harden_loop_on_ray_stores_the_in_process_results(local_ray, questioner_chat_path, tmp_path):
    import torch

    from redlat.config import HardenLoopConfig
    from redlat.experiments.commands import harden_loop
    from synthetic_runs import write_rude_run

    cfg = HardenLoopConfig(
        target=str(questioner_chat_path), red=str(questioner_chat_path), classifier="profanity", threshold=0.5,
        find_runs=[str(write_rude_run(tmp_path / "zs"))], defences=["at", "sft"], attack_n=4, prompt_sets=[],
        harden={"held_out": 1, "epochs": 1, "safe_samples": 2, "max_prompt_tokens": 48, "max_reply_tokens": 16},
        redteam={"target_generation": {"max_new_tokens": 8}, "red_generation": {"batch_size": 8}}, device="cpu",
    )
    local = harden_loop(cfg, tmp_path / "local")
    on_ray = cfg.model_copy(update={"ray": RaySettings(enabled=True, threads_per_worker=torch.get_num_threads())})
    remote = harden_loop(on_ray, tmp_path / "ray")

    def measures(summary):  # as JSON text, so that NaN (an attack with no counted case) equals NaN
        import json

        return json.dumps([(s["setting"], {k: v for k, v in s["metrics"].items() if "seconds" not in k})
                           for s in summary["settings"]], sort_keys=True)

    assert [s["setting"] for s in local["settings"]] == ["original", "at", "sft"]
    assert measures(remote) == measures(local)
    with RunStore(tmp_path / "ray" / "attacks" / "at" / "zero-shot") as store:
        assert store.get_meta("execution")[-1]["kind"] == "ray"  # the loop's red-team runs played on Ray


def test_ctranslate2_engine_on_ray_workers_gives_the_in_process_run(local_ray, questioner_chat_path, tmp_path):
    pytest.importorskip("ctranslate2")
    import torch

    engine = {"name": "ctranslate2", "compute_type": "int8"}
    reference = redteam(_cfg(questioner_chat_path, engine=engine), tmp_path / "local")
    same_threads = RaySettings(enabled=True, workers=2, threads_per_worker=torch.get_num_threads())
    on_ray = redteam(_cfg(questioner_chat_path, engine=engine, ray=same_threads), tmp_path / "ray")
    assert _stored(on_ray.run_dir)[:2] == _stored(reference.run_dir)[:2]
    with RunStore(on_ray.run_dir) as store:
        assert store.run_info().provenance["generation"]["target"]["engine"]["compute_type"] == "int8"
