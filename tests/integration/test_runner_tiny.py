import hashlib

import pytest

from fakes import RudeWordScorer, tiny_parts
from redlat.chatbot import Chatbot
from redlat.config import RedGeneration, RedTeamConfig
from redlat.errors import RunDirMismatchError
from redlat.red_team import runner
from redlat.red_team.runner import Components, redteam
from redlat.store import RunStore


def _cfg(**kw) -> RedTeamConfig:
    base = dict(n=12, red="tiny-red", target="tiny-red", classifiers=[{"name": "rude-words"}],
                red_generation=RedGeneration(batch_size=6, max_new_tokens=16), device="cpu")
    base.update(kw)
    return RedTeamConfig(**base)





def _attempts(run_dir):
    with RunStore(run_dir) as store:
        return [(a.index, a.sample_index, a.test_case, a.reply, a.score) for a in store.attempts()]


@pytest.mark.parametrize("lm_fixture", ["questioner_lm", "questioner_chat_lm"])  # DPG and chat-template targets
def test_zero_shot_run_finds_n_unique_valid_cases(lm_fixture, request, tmp_path):
    cfg = _cfg()
    result = redteam(cfg, tmp_path / "run", components=tiny_parts(request.getfixturevalue(lm_fixture), cfg))
    s = result.summary
    assert s["n_unique"] == 12 and s["stop_reason"] == "reached_n" and s["status"] == "complete"
    assert s["n_samples"] >= s["n_valid"] >= s["n_unique"]
    with RunStore(tmp_path / "run") as store:
        attempts = list(store.attempts())
        samples = {x.index: x for x in store.samples()}
    cases = [a.test_case for a in attempts]
    assert len(set(cases)) == len(cases) == 12
    assert all(c.endswith("?") and c.count("?") == 1 for c in cases)
    for a in attempts:  # every attempt comes from a valid, first-seen sample
        assert samples[a.sample_index].test_case == a.test_case and not samples[a.sample_index].duplicate
        if lm_fixture == "questioner_lm":  # the DPG prompt's reply ends at the newline; a chat reply at its turn
            assert "\n" not in a.reply
        assert a.offensive == (a.score > 0.5)
        assert set(a.scores["rude-words"]) == {"rude", "polite"}
    # the last stored sample is the one that completed n: nothing drawn after it is counted
    assert max(samples) == attempts[-1].sample_index


def test_same_seed_same_run_other_seed_other_run(questioner_chat_lm, tmp_path):
    a = redteam(_cfg(), tmp_path / "a", components=tiny_parts(questioner_chat_lm, _cfg()))
    b = redteam(_cfg(), tmp_path / "b", components=tiny_parts(questioner_chat_lm, _cfg()))
    c = redteam(_cfg(seed=1), tmp_path / "c", components=tiny_parts(questioner_chat_lm, _cfg(seed=1)))
    assert _attempts(a.run_dir) == _attempts(b.run_dir)
    assert _attempts(a.run_dir) != _attempts(c.run_dir)


def test_interrupted_run_resumes_to_the_uninterrupted_result(questioner_chat_lm, tmp_path):
    cfg = _cfg(n=16, red_generation=RedGeneration(batch_size=4, max_new_tokens=16))
    reference = redteam(cfg, tmp_path / "ref", components=tiny_parts(questioner_chat_lm, cfg))
    with pytest.raises(KeyboardInterrupt):
        redteam(cfg, tmp_path / "run", components=tiny_parts(questioner_chat_lm, cfg, RudeWordScorer(fail_on_call=3)))
    with RunStore(tmp_path / "run") as store:
        assert store.next_round() == 2  # two whole rounds committed, the third lost whole
        assert store.run_info().status == "running"
        partial = store.counts().n_unique
    assert 0 < partial < 16
    resumed = redteam(cfg, tmp_path / "run", components=tiny_parts(questioner_chat_lm, cfg))
    assert resumed.resumed
    assert _attempts(tmp_path / "run") == _attempts(reference.run_dir)
    assert resumed.summary["n_samples"] == reference.summary["n_samples"]
    with RunStore(tmp_path / "run") as store:
        assert len(store.run_info().provenance["resumed_by"]) == 1


def test_sample_cap_stops_the_run(questioner_chat_lm, tmp_path):
    cfg = _cfg(n=30, max_samples=30)
    s = redteam(cfg, tmp_path / "run", components=tiny_parts(questioner_chat_lm, cfg)).summary
    assert s["stop_reason"] == "reached_max_samples"
    assert s["n_samples"] == 30 and s["n_unique"] < 30


def test_other_config_refuses_to_resume_and_leaves_the_run_untouched(questioner_chat_lm, tmp_path):
    cfg = _cfg()
    redteam(cfg, tmp_path / "run", components=tiny_parts(questioner_chat_lm, cfg))
    db = tmp_path / "run" / "run.sqlite"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    with pytest.raises(RunDirMismatchError, match=r"n: 12 -> 13"):
        redteam(_cfg(n=13), tmp_path / "run", components=tiny_parts(questioner_chat_lm, cfg))
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_complete_run_is_not_redone(questioner_chat_lm, tmp_path, monkeypatch):
    cfg = _cfg()
    first = redteam(cfg, tmp_path / "run", components=tiny_parts(questioner_chat_lm, cfg))

    def no_loading(_cfg):
        raise AssertionError("models must not be loaded for a complete run")

    monkeypatch.setattr(runner, "load_components", no_loading)
    again = redteam(cfg, tmp_path / "run")
    assert again.resumed and again.summary["top"] == first.summary["top"]


def test_all_classifiers_stored_first_decides(questioner_chat_lm, tmp_path):
    class Inverse(RudeWordScorer):
        name = "inverse"

        def score(self, texts):
            batch = super().score(texts)
            return type(batch)(scores=[1 - s for s in batch.scores], detail=batch.detail)

    cfg = _cfg(classifiers=[{"name": "rude-words"}, {"name": "inverse"}])
    parts = Components(red=questioner_chat_lm, chatbot=Chatbot(questioner_chat_lm, cfg.chatbot, cfg.target_generation),
                       scorers=[RudeWordScorer(), Inverse()])
    redteam(cfg, tmp_path / "run", components=parts)
    with RunStore(tmp_path / "run") as store:
        for a in store.attempts():
            assert set(a.scores) == {"rude-words", "inverse"}
            assert a.score == pytest.approx(a.scores["rude-words"]["rude"])
