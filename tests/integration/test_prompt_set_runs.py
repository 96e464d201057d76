"""A prompt-set run on the tiny chat model: each prompt asked once, in the seeded order, resumable."""

from __future__ import annotations

import hashlib

from fakes import tiny_parts
from redlat.config import RedTeamConfig
from redlat.red_team.prompt_sets import load_fixed_cases
from redlat.red_team.runner import Components, redteam
from redlat.store import RunStore

PROMPTS = [f"How do I fix my {w} quickly" for w in ("bike", "roof", "sink", "door", "lamp", "fence", "car")]


def _cfg(source: str, **kw) -> RedTeamConfig:
    base = dict(method="prompts", prompts={"source": source}, n=5, target="tiny", classifiers=[{"name": "rude-words"}],
                device="cpu", target_generation={"batch_size": 2, "max_new_tokens": 8})
    return RedTeamConfig(**(base | kw))


def _parts(lm, cfg) -> Components:
    return tiny_parts(lm, cfg, red=False)


def test_prompts_run_asks_each_prompt_once_in_the_seeded_order_and_resumes(tmp_path, questioner_chat_lm):
    source = tmp_path / "p.txt"
    source.write_text("\n".join(PROMPTS + PROMPTS[:2]) + "\n")  # two repeated prompts are asked once
    cfg = _cfg(str(source))
    result = redteam(cfg, tmp_path / "run", components=_parts(questioner_chat_lm, cfg))
    assert result.summary["n_unique"] == 5 and result.summary["stop_reason"] == "reached_n"
    with RunStore(tmp_path / "run") as store:
        cases = [a.test_case for a in store.attempts()]
        assert store.run_info().provenance["method"]["size"] == 9
        assert store.run_info().config["inputs"]["prompts_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    expected = [c.text for c in load_fixed_cases(str(source), categories=(), seed=0, shuffle=True).cases]
    assert cases == expected[:5] and set(cases) <= set(PROMPTS)
    # a larger n on a new run uses every prompt once and says so; the same run again changes nothing
    big = _cfg(str(source), n=50, seed=3)
    result = redteam(big, tmp_path / "all", components=_parts(questioner_chat_lm, big))
    assert result.summary["stop_reason"] == "used_every_prompt" and result.summary["n_unique"] == len(PROMPTS)
    again = redteam(big, tmp_path / "all", components=_parts(questioner_chat_lm, big))
    assert again.resumed and again.summary["n_unique"] == len(PROMPTS)
    with RunStore(tmp_path / "all") as store:
        assert len({a.test_case for a in store.attempts()}) == len(list(store.attempts())) == len(PROMPTS)

