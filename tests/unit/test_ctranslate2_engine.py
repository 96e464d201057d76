"""The CTranslate2 engine on tiny GPT-2s: converted once and reused; seeded; the newline stop and the token limit;
greedy decoding (nucleus p -> 0) equal to the transformers engine's; the shared prefix as a static prompt changes
nothing; a run records its engine, and the engine is part of the run's identity."""

from __future__ import annotations

import pytest

from redlat.config import EngineSettings, RedTeamConfig
from redlat.engines import make_sampler
from redlat.generation import Sampler, SamplingSettings

ctranslate2 = pytest.importorskip("ctranslate2")

QUESTION = "List of questions to ask someone:\n1."


def _ct2(lm, **settings):
    base = {"top_p": 0.95, "temperature": 1.0, "max_new_tokens": 12, "stop_at_newline": True}
    return make_sampler(lm, SamplingSettings(**{**base, **settings}), batch_size=4,
                        engine=EngineSettings(name="ctranslate2"))


def test_converted_once_then_reused(questioner_lm):
    first = _ct2(questioner_lm)
    marker = first.directory / "redlat-conversion.json"
    stamp = marker.stat().st_mtime_ns
    second = _ct2(questioner_lm)
    assert second.directory == first.directory and marker.stat().st_mtime_ns == stamp
    assert first.effective_settings()["engine"]["compute_type"] == "float32"


def test_same_seed_same_samples_other_seed_other_samples(questioner_lm):
    sampler = _ct2(questioner_lm)
    prompts = [QUESTION] * 8
    a = sampler.sample(prompts, seed=1)
    assert a == sampler.sample(prompts, seed=1)
    assert a != sampler.sample(prompts, seed=2)
    assert len(set(a)) > 1  # sampled, not greedy


def test_newline_stop_and_token_limit(questioner_lm):
    tok = questioner_lm.tokenizer
    stopped = _ct2(questioner_lm, max_new_tokens=40).sample([QUESTION] * 8, seed=0)
    assert all("\n" not in text for text in stopped)
    free = _ct2(questioner_lm, max_new_tokens=6, stop_at_newline=False).sample([QUESTION] * 8, seed=0)
    assert all(len(tok(text)["input_ids"]) <= 6 for text in free)
    assert any("\n" in text for text in _ct2(questioner_lm, max_new_tokens=40, stop_at_newline=False)
               .sample([QUESTION] * 8, seed=0))  # the questioner does write newlines: the stop is doing the work


def test_greedy_matches_the_transformers_engine(questioner_lm):
    """Nucleus p -> 0 keeps only the most probable token: both engines then decode greedily, alike."""
    settings = SamplingSettings(top_p=1e-9, temperature=1.0, max_new_tokens=10, stop_at_newline=False)
    prompts = [QUESTION, "What is your name?", "Tell me"]
    torch_side = Sampler(questioner_lm, settings, batch_size=4).sample(prompts, seed=0)
    ct2_side = make_sampler(questioner_lm, settings, batch_size=4,
                            engine=EngineSettings(name="ctranslate2")).sample(prompts, seed=5)
    assert ct2_side == torch_side and any(torch_side)


def test_shared_prefix_as_static_prompt_changes_nothing(questioner_lm):
    settings = SamplingSettings(top_p=1e-9, temperature=1.0, max_new_tokens=8, stop_at_newline=False)
    prefix = "USER: " + "a question about the weather and the sea " * 3
    prompts = [prefix + "\nBOT: why?", prefix + "\nBOT: what now?"]
    from redlat.engines.ctranslate2 import CTranslate2Sampler

    cached = CTranslate2Sampler(questioner_lm, settings, batch_size=2)
    plain = CTranslate2Sampler(questioner_lm, settings, batch_size=2, reuse_prefix=False)
    assert cached.sample(prompts, seed=0) == plain.sample(prompts, seed=0)


def test_engine_in_identity_and_recorded(questioner_chat_path, tmp_path):
    from redlat.errors import RunDirMismatchError
    from redlat.red_team.runner import redteam
    from redlat.store import RunStore

    base = dict(n=6, red=str(questioner_chat_path), target=str(questioner_chat_path), device="cpu",
                classifiers=[{"name": "fakes:load_rude_words"}], red_generation={"batch_size": 4,
                                                                                "max_new_tokens": 12})
    assert "engine" not in RedTeamConfig(**base).identity()  # the default: old runs keep their identity
    cfg = RedTeamConfig(**base, engine={"name": "ctranslate2"})
    result = redteam(cfg, tmp_path / "run")
    assert result.summary["n_unique"] == 6
    with RunStore(tmp_path / "run") as store:
        generation = store.run_info().provenance["generation"]
    assert generation["red"]["engine"]["name"] == "ctranslate2"
    assert generation["target"]["sampler"] == "ctranslate2"
    with pytest.raises(RunDirMismatchError, match="engine"):
        redteam(RedTeamConfig(**base), tmp_path / "run")  # the same run on the transformers engine


def test_compute_type_belongs_to_ctranslate2():
    with pytest.raises(ValueError, match="ctranslate2 setting"):
        EngineSettings(name="transformers", compute_type="int8")
