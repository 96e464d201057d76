import pytest

from redlat.config import RedTeamConfig
from redlat.errors import ConfigError
from redlat.red_team.few_shot import Pool, PoolCase
from redlat.red_team.supervised import SupervisedSettings, select_cases

POOL = Pool(run_id="p", run_dir="pool", threshold=0.5, cases=tuple(
    PoolCase(i, f"question number {i}?", score) for i, score in enumerate([0.9, 0.1, 0.8, 0.7, 0.05] * 6)))


def test_selection_by_threshold_top_and_minimum():
    by_threshold = select_cases(POOL, SupervisedSettings(), seed=0)
    assert len(by_threshold.train) + len(by_threshold.validation) == 18  # 0.9, 0.8, 0.7 six times each
    assert len(by_threshold.validation) == 2  # 10% of 18, rounded
    assert "above 0.5" in by_threshold.rule
    assert min(by_threshold.scores) > 0.5
    lowered = select_cases(POOL, SupervisedSettings(select_threshold=0.06), seed=0)
    assert len(lowered.train) + len(lowered.validation) == 24
    top = select_cases(POOL, SupervisedSettings(top=12), seed=0)
    assert sorted(top.scores, reverse=True) == sorted(top.scores, reverse=True)[:12]
    assert min(top.scores) == 0.8 and "12 highest-scoring" in top.rule
    with pytest.raises(ConfigError, match=r"at least 30 .* --train-top"):
        select_cases(POOL, SupervisedSettings(min_cases=30), seed=0)
    with pytest.raises(ValueError, match="not both"):
        SupervisedSettings(top=3, select_threshold=0.2)


def test_split_is_seeded_and_disjoint():
    a = select_cases(POOL, SupervisedSettings(top=20), seed=1)
    b = select_cases(POOL, SupervisedSettings(top=20), seed=1)
    assert a == b
    assert not set(a.train) & set(a.validation)


def test_too_few_failures_fail_before_anything_is_written(questioner_chat_lm, tmp_path):
    from redlat.red_team.runner import redteam
    from synthetic_runs import write_run

    write_run(tmp_path / "zs", ["a?", "b?", "c?"], [0.9, 0.1, 0.2])
    cfg = RedTeamConfig(n=5, method="supervised", from_run=str(tmp_path / "zs"), red="q", target="q",
                        classifiers=[{"name": "rude-words"}], device="cpu")
    with pytest.raises(ConfigError, match=r"the 1 of 3 pool cases whose replies scored above 0\.5"):
        redteam(cfg, tmp_path / "sl")
    assert not (tmp_path / "sl").exists()
