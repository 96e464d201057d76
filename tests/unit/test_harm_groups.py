"""Distributional bias: questions about each group, the failure rate per group and the test of whether they differ."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest

from redlat.config import RedTeamConfig
from redlat.errors import ConfigError
from redlat.groups import GroupRate, group_rates, rates_differ
from redlat.records import Attempt
from redlat.red_team.group_questions import GroupQuestions, read_groups
from redlat.scoring import BaseScorer, Exchange, ScoreBatch


def _attempts(rows: dict[str, tuple[int, int]]) -> list[Attempt]:
    out = []
    for group, (failing, n) in rows.items():
        for i in range(n):
            score = 0.9 if i < failing else 0.1
            out.append(Attempt(index=len(out), run_id="r", method="groups", round=0, sample_index=len(out),
                               test_case=f"{group} {i}?", reply="r", score=score, offensive=score > 0.5,
                               origin={"group": group}))
    return out


def test_rates_per_group_with_wilson_intervals():
    from redlat.summary import wilson_interval

    rows = group_rates(_attempts({"a": (3, 10), "b": (0, 5)}), threshold=0.5)
    assert [(r.group, r.n, r.failures, r.rate) for r in rows] == [("a", 10, 3, 0.3), ("b", 5, 0, 0.0)]
    assert (rows[0].low, rows[0].high) == wilson_interval(3, 10)


def test_the_chi_square_test_against_scipy_by_hand():
    """Pearson's statistic on the groups x (failed, passed) table, computed here from the expected counts."""
    rows = group_rates(_attempts({"a": (12, 20), "b": (2, 20), "c": (5, 20)}), threshold=0.5)
    test = rates_differ(rows)
    total_fail, total = 19, 60
    statistic = 0.0
    for failures in (12, 2, 5):
        for observed, share in ((failures, total_fail / total), (20 - failures, 1 - total_fail / total)):
            expected = 20 * share
            statistic += (observed - expected) ** 2 / expected
    assert test["statistic"] == pytest.approx(statistic) and test["dof"] == 2
    from scipy.stats import chi2

    assert test["p"] == pytest.approx(chi2.sf(statistic, 2)) and test["p"] < 0.05 and test["small_cells"] == 0


@pytest.mark.parametrize(
    "rows", [{"a": (2, 10), "b": (2, 10)}, {"a": (0, 10), "b": (0, 7)}, {"a": (5, 5), "b": (3, 3)}]
)
def test_equal_rates_are_not_a_difference(rows):
    test = rates_differ(group_rates(_attempts(rows), threshold=0.5))
    assert test["p"] == pytest.approx(1.0) and test["statistic"] == pytest.approx(0.0)


def test_small_tables_take_p_from_a_seeded_permutation_test():
    """Few failures (the usual case) make the chi-square distribution a poor guide: 2 of 16 against 0 of 16 in each
    of 11 other groups is p = 0.09 by it, about 0.22 by permuting the failures among the attempts."""
    rows = [GroupRate("a", 16, 2, 0.125, 0, 1), GroupRate("b", 16, 1, 0.0625, 0, 1),
            *(GroupRate(f"g{i}", 16, 0, 0.0, 0, 1) for i in range(11))]
    test = rates_differ(rows)
    assert test["small_cells"] == 13 and test["method"].startswith("permutation")
    assert test["p_asymptotic"] == pytest.approx(0.090, abs=0.001) and 0.18 < test["p"] < 0.26
    assert rates_differ(rows)["p"] == test["p"]  # seeded: the same table, the same p


def test_group_lists_and_bad_input(tmp_path):
    toxigen = read_groups("toxigen")
    assert len(toxigen) == 13 and "women" in toxigen and "Muslim people" in toxigen
    listed = tmp_path / "groups.txt"
    listed.write_text("cats\n\n  dogs  \ncats\nowls\n")
    assert read_groups(str(listed)) == ["cats", "dogs", "owls"]  # blanks and repeats dropped
    assert read_groups(("teachers", "nurses")) == ["teachers", "nurses"]
    with pytest.raises(ConfigError, match=r"unknown group list 'toxigenn'.*toxigen"):
        read_groups("toxigenn")
    with pytest.raises(ConfigError, match="at least two"):
        read_groups(("only one",))
    with pytest.raises(ValueError, match="without \\{group\\}"):
        RedTeamConfig(method="groups", method_settings={"templates": ["What is the time?"]})
    with pytest.raises(ValueError, match="red prompt needs"):
        RedTeamConfig(method="groups", method_settings={"generate": "red", "red_prompt": "List:\n1."})


def test_templates_cycle_through_the_groups_so_every_prefix_is_balanced(tmp_path):
    cfg = RedTeamConfig(method="groups", method_settings={"groups": ["cats", "dogs", "owls"],
                                                          "templates": ["Why {group}?", "Are {group} nice?"]})
    method = GroupQuestions(cfg, tmp_path)
    assert method.capacity() == 6 and not GroupQuestions.uses_red(cfg.method_settings)
    groups = [origin["group"] for _, origin in method.cases]
    assert groups == ["cats", "dogs", "owls"] * 2
    assert Counter(text for text, _ in method.cases) == Counter(
        t.replace("{group}", g) for t in ("Why {group}?", "Are {group} nice?") for g in ("cats", "dogs", "owls"))
    assert GroupQuestions.uses_red({"generate": "red"})


class _CatHater(BaseScorer):
    """Fails a reply exactly when its test case is about cats: a bias the test must find."""

    def __init__(self) -> None:
        super().__init__(name="cat-hater", labels=("bad",), label="bad", weights={}, batch_size=8)

    def judge(self, exchanges: Sequence[Exchange]) -> ScoreBatch:
        scores = [1.0 if "cats" in e.test_case else 0.0 for e in exchanges]
        return ScoreBatch(scores=scores, detail=[{"bad": s} for s in scores])


def test_a_groups_run_finds_the_bias_a_judge_has_and_none_where_there_is_none(questioner_chat_lm, tmp_path):
    from fakes import RudeWordScorer
    from redlat.chatbot import Chatbot
    from redlat.red_team.runner import Components, redteam

    cfg = RedTeamConfig(method="groups", n=30, target="q", device="cpu",
                        method_settings={"groups": ["cats", "dogs", "owls"]})
    chatbot = Chatbot(questioner_chat_lm, cfg.chatbot, cfg.target_generation)
    biased = redteam(cfg, tmp_path / "biased", components=Components(red=None, chatbot=chatbot,
                                                                      scorers=[_CatHater()])).summary
    rows = {r["group"]: r for r in biased["groups"]["rows"]}
    assert {g: (r["n"], r["failures"]) for g, r in rows.items()} == {"cats": (10, 10), "dogs": (10, 0),
                                                                        "owls": (10, 0)}
    assert biased["groups"]["test"]["p"] < 1e-3
    metrics = {m["name"]: m["value"] for m in biased["metrics"]}
    assert metrics["group_rate_gap"] == 1.0 and metrics["group_test_p"] == biased["groups"]["test"]["p"]
    assert biased["red"] == "none (groups)"

    class _Never(RudeWordScorer):
        def score(self, texts):
            return ScoreBatch(scores=[0.0] * len(texts), detail=[{"rude": 0.0, "polite": 1.0}] * len(texts))

    fair = redteam(cfg, tmp_path / "fair", components=Components(red=None, chatbot=chatbot,
                                                                  scorers=[_Never()])).summary
    assert fair["groups"]["test"]["p"] == 1.0 and {r["failures"] for r in fair["groups"]["rows"]} == {0}


def test_the_report_shows_each_groups_rate_and_a_bar_chart_with_hostile_names_escaped(tmp_path):
    from fakes import BagOfWordsEmbedder
    from redlat import ReportConfig, build_report
    from synthetic_runs import write_run

    groups = ["cats", "<script>alert(1)</script>"]
    origins = [{"group": groups[i % 2]} for i in range(8)]
    run = write_run(tmp_path / "g", [f"q{i}?" for i in range(8)], [0.9, 0.1] * 4, origins=origins)
    page = build_report([run], tmp_path / "report.html", ReportConfig(score_test_cases=False, analyze=False),
                        embedder=BagOfWordsEmbedder()).read_text(encoding="utf-8")
    assert "replies by group" in page and 'class="section-figure"' in page and "<td>cats</td>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert "by permutation (9999 resamples)" in page  # cats fail 4 of 4, the other group 0 of 4: chi-square 8


def test_the_red_lm_writes_questions_for_each_group_in_turn(questioner_chat_lm, tmp_path):
    from fakes import tiny_parts
    from redlat.red_team.runner import redteam
    from redlat.store import RunStore

    cfg = RedTeamConfig(method="groups", n=9, target="q", device="cpu",
                        method_settings={"groups": ["cats", "dogs", "owls"], "generate": "red"},
                        red_generation={"batch_size": 6, "max_new_tokens": 12})
    summary = redteam(cfg, tmp_path / "run", components=tiny_parts(questioner_chat_lm, cfg)).summary
    assert summary["red"] == str(cfg.red) and summary["n_unique"] == 9
    with RunStore(tmp_path / "run") as store:
        samples = {s.index: s for s in store.samples()}
        for attempt in store.attempts():  # the group follows the sample's place in the run: 0 cats, 1 dogs, ...
            assert attempt.origin["group"] == ["cats", "dogs", "owls"][attempt.sample_index % 3]
            assert samples[attempt.sample_index].test_case == attempt.test_case
