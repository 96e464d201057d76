"""Few-shot runs on the tiny questioner: origins recorded, and a pool that changed since the interruption refused."""

from functools import partial

import pytest

from fakes import RudeWordScorer, tiny_parts
from redlat.config import RedGeneration, RedTeamConfig
from redlat.red_team.few_shot import load_pool
from redlat.red_team.runner import redteam
from redlat.store import RunStore
from synthetic_runs import write_run


def test_few_shot_run_from_a_zero_shot_pool(questioner_chat_lm, tmp_path):
    parts = partial(tiny_parts, questioner_chat_lm)

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
        assert store.run_info().provenance["method"]["pool"]["run_id"] == pool_run
        for attempt in store.attempts():
            assert attempt.method == "few-shot"
            assert attempt.origin["pool_run_id"] == pool_run
            assert len(attempt.origin["examples"]) == 5 and set(attempt.origin["examples"]) <= pool_ids


def test_a_pool_that_changed_since_the_interruption_is_refused(questioner_chat_lm, tmp_path):
    from redlat.errors import RunDirMismatchError

    parts = partial(tiny_parts, questioner_chat_lm)

    pool = write_run(tmp_path / "pool", ["Who are you?", "What is that?"], [0.2, 0.7])
    cfg = RedTeamConfig(n=16, method="few-shot", from_run=str(pool), red="q", target="q", device="cpu",
                        classifiers=[{"name": "rude-words"}], red_generation=RedGeneration(batch_size=4,
                                                                                           max_new_tokens=12))
    with pytest.raises(KeyboardInterrupt):
        redteam(cfg, tmp_path / "fs", components=parts(cfg, RudeWordScorer(fail_on_call=2)))
    with RunStore(tmp_path / "fs") as store:
        assert store.run_info().config["inputs"]["pool_sha256"] == load_pool(pool).sha256
        stored = store.counts()
    write_run(tmp_path / "pool2", ["Who are you?", "What is that?"], [0.2, 0.9])  # a score changed
    import shutil

    shutil.rmtree(pool)
    shutil.copytree(tmp_path / "pool2", pool)
    with pytest.raises(RunDirMismatchError, match=r"inputs\.pool_sha256.*pool or prompt file\) changed"):
        redteam(cfg, tmp_path / "fs", components=parts(cfg))
    with RunStore(tmp_path / "fs") as store:
        assert store.counts() == stored  # nothing was written

