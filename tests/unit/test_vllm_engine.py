"""The vLLM engine. Everywhere: the request settings redlat asks vLLM for, per-request seeds, the errors when vLLM or
a GPU is missing (before any model loads, with no run directory left behind), and the engine in a run's identity.
On a machine with vLLM and CUDA only: real sampling on a tiny GPT-2 (seeded, newline stop, greedy equal to the
transformers engine). vLLM is never faked."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from redlat.config import EngineSettings, RedTeamConfig
from redlat.engines.vllm import TOP_K_OFF, finish_text, request_settings, row_seeds
from redlat.errors import ConfigError
from redlat.generation import SamplingSettings

HAS_VLLM = importlib.util.find_spec("vllm") is not None
SETTINGS = SamplingSettings(top_p=0.8, temperature=0.7, max_new_tokens=20, stop_at_newline=True)


def test_request_settings_are_redlats_with_everything_else_neutral():
    params = request_settings(SETTINGS, seed=11, end_ids=[50256, 7])
    assert (params["top_p"], params["temperature"], params["max_tokens"], params["seed"]) == (0.8, 0.7, 20, 11)
    assert params["top_k"] == TOP_K_OFF == -1
    assert (params["repetition_penalty"], params["presence_penalty"], params["frequency_penalty"]) == (1.0, 0.0, 0.0)
    assert params["min_p"] == 0.0 and params["n"] == 1
    assert params["stop"] == ["\n"] and params["stop_token_ids"] == [50256, 7] and not params["ignore_eos"]
    chat = request_settings(SamplingSettings(top_p=0.8, temperature=1.0, max_new_tokens=5, stop_at_newline=False),
                            seed=0, end_ids=[2])
    assert chat["stop"] is None and chat["stop_token_ids"] == [2]


def test_row_seeds_depend_on_the_call_seed_and_the_row_only():
    seeds = row_seeds(3, 6)
    assert seeds == row_seeds(3, 6) and seeds[:4] == row_seeds(3, 4)  # a row's seed ignores the call's size
    assert len(set(seeds)) == 6 and set(seeds).isdisjoint(row_seeds(4, 6))
    assert all(0 <= s < 2**63 for s in seeds)


def test_text_is_cut_at_the_first_newline_for_dpg_only():
    assert finish_text("why?\nUSER: more", stop_at_newline=True) == "why?"
    assert finish_text("why?\nmore", stop_at_newline=False) == "why?\nmore"


def test_engine_settings_identity_and_validation():
    base = {"n": 4, "red": "tiny", "target": "tiny", "classifiers": [{"name": "profanity"}]}
    cfg = RedTeamConfig(**base, engine={"name": "vllm", "gpu_memory_utilization": 0.7})
    assert cfg.identity()["engine"] == {"name": "vllm", "compute_type": "float32"}  # where it fits is not identity
    other = RedTeamConfig(**base, engine={"name": "vllm", "gpu_memory_utilization": 0.3})
    assert cfg.identity() == other.identity()
    assert "engine" not in RedTeamConfig(**base).identity()
    with pytest.raises(ValueError, match="ctranslate2 setting"):
        EngineSettings(name="vllm", compute_type="int8")
    with pytest.raises(ValueError):
        EngineSettings(name="vllm", gpu_memory_utilization=1.5)


def test_vllm_needs_a_gpu_before_any_model_loads():
    from redlat.engines import check_engine

    with pytest.raises(ConfigError, match="NVIDIA GPUs" if HAS_VLLM else "redlat\\[vllm\\]"):
        check_engine(EngineSettings(name="vllm"), "cpu")


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here: the missing-engine error cannot happen")
def test_cli_without_vllm_is_a_clear_error_and_leaves_no_run(questioner_path, tmp_path):
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "redlat", "redteam", "--red", str(questioner_path), "--target", str(questioner_path),
         "--n", "4", "--run-dir", str(run), "--classifier", "profanity", "--device", "cpu", "--engine", "vllm",
         "--no-progress"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )
    assert result.returncode == 2 and "needs vLLM" in result.stderr and "Traceback" not in result.stderr
    assert not run.exists()


def _gpu_ready() -> bool:
    if not HAS_VLLM:
        return False
    import torch

    return torch.cuda.is_available()


gpu = pytest.mark.skipif(not _gpu_ready(), reason="vLLM and a CUDA GPU are needed to run the vLLM engine")


@pytest.fixture(scope="module")
def questioner_on_gpu(questioner_path):
    from redlat.models.causal_lm import load_causal_lm

    return load_causal_lm(str(questioner_path), device="cuda", dtype="float32")


@gpu
def test_vllm_seeded_and_stops_at_newlines(questioner_on_gpu):
    from redlat.engines.vllm import VLLMSampler

    sampler = VLLMSampler(questioner_on_gpu, SETTINGS, batch_size=4, gpu_memory_utilization=0.2)
    prompts = ["List of questions to ask someone:\n1."] * 8
    first = sampler.sample(prompts, seed=1)
    assert first == sampler.sample(prompts, seed=1) and first != sampler.sample(prompts, seed=2)
    assert len(set(first)) > 1 and all("\n" not in text for text in first)
    assert sampler.sample(prompts[:3], seed=1) == first[:3]  # per-request seeds: a row ignores its neighbours


@gpu
def test_vllm_greedy_matches_the_transformers_engine(questioner_on_gpu):
    from redlat.engines.vllm import VLLMSampler
    from redlat.generation import Sampler

    settings = SamplingSettings(top_p=1e-9, temperature=1.0, max_new_tokens=10, stop_at_newline=False)
    prompts = ["List of questions to ask someone:\n1.", "What is your name?", "Tell me"]
    torch_side = Sampler(questioner_on_gpu, settings, batch_size=4).sample(prompts, seed=0)
    vllm_side = VLLMSampler(questioner_on_gpu, settings, batch_size=4, gpu_memory_utilization=0.2).sample(
        prompts, seed=5)
    assert vllm_side == torch_side and any(torch_side)
