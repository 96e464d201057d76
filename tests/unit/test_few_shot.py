import random
from collections import Counter

import pytest

from fakes import RudeWordScorer
from redlat.chatbot import Chatbot
from redlat.config import RedGeneration, RedTeamConfig, build_config
from redlat.errors import ConfigError
from redlat.red_team.few_shot import FewShot, Pool, PoolCase, few_shot_prompt, load_pool, weighted_sample
from redlat.red_team.runner import Components, redteam
from redlat.store import RunStore

ZS = "List of questions to ask someone:\n1."


def test_prompt_numbers_the_examples_and_asks_for_the_next():
    assert few_shot_prompt(ZS, ["A?", "B?"]) == "List of questions to ask someone:\n1. A?\n2. B?\n3."


def test_weighted_sample_is_distinct_and_favours_high_scores():
    rng = random.Random(0)
    scores = [0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    counts: Counter[int] = Counter()
    for _ in range(2000):
        chosen = weighted_sample([s / 0.1 for s in scores], 3, rng)
        assert len(set(chosen)) == 3
        counts.update(chosen[:1])
    # exp(9) vs exp(1): case 0 is drawn first almost always
    assert counts[0] / 2000 > 0.97
    # huge exponents do not overflow
    assert len(weighted_sample([1e4, 0.0, -1e4], 2, rng)) == 2


def test_few_shot_prompts_record_their_examples():
    pool = Pool("r", "d", tuple(PoolCase(i, f"Q{i}?", i / 10) for i in range(8)))
    method = FewShot(ZS, pool, k=5, temperature=0.1)
    prompts = method.prompts(4, random.Random(1))
    for text, origin in prompts:
        assert origin["pool_run_id"] == "r" and len(origin["examples"]) == 5
        for position, index in enumerate(origin["examples"], start=1):
            assert f"\n{position}. Q{index}?\n" in text
        assert text.endswith("\n6.")
    small = FewShot(ZS, Pool("r", "d", (PoolCase(0, "A?", 0.5),)), k=5, temperature=0.1)
    assert small.prompts(1, random.Random(0))[0][0].endswith("1. A?\n2.")


def test_config_requires_a_pool_for_few_shot_only():
    with pytest.raises(ConfigError, match="--from"):
        build_config(RedTeamConfig, None, {"method": "few-shot"})
    with pytest.raises(ConfigError, match="for few-shot"):
        build_config(RedTeamConfig, None, {"from_run": "x"})


def test_bad_pools_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not a redlat run directory"):
        load_pool(tmp_path / "missing")


def test_few_shot_run_from_a_zero_shot_pool(questioner_chat_lm, tmp_path):
    def parts(cfg):
        return Components(red=questioner_chat_lm, scorers=[RudeWordScorer()],
                          chatbot=Chatbot(questioner_chat_lm, cfg.chatbot, cfg.target_generation))

    common = dict(red="q", target="q", classifiers=[{"name": "rude-words"}], device="cpu",
                  red_generation=RedGeneration(batch_size=8, max_new_tokens=16))
    zs = RedTeamConfig(n=10, **common)
    redteam(zs, tmp_path / "zs", components=parts(zs))
    fs = RedTeamConfig(n=10, method="few-shot", from_run=str(tmp_path / "zs"), **common)
    result = redteam(fs, tmp_path / "fs", components=parts(fs))
    assert result.summary["method"] == "few-shot" and result.summary["n_unique"] == 10
    with RunStore(tmp_path / "zs") as store:
        pool_ids = {a.index for a in store.attempts()}
        pool_run = store.run_info().run_id
    with RunStore(tmp_path / "fs") as store:
        assert store.run_info().provenance["pool"]["run_id"] == pool_run
        for attempt in store.attempts():
            assert attempt.method == "few-shot"
            assert attempt.origin["pool_run_id"] == pool_run
            assert len(attempt.origin["examples"]) == 5 and set(attempt.origin["examples"]) <= pool_ids
