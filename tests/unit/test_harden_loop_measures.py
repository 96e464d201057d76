"""The harden-loop's measures on synthetic attack runs: unseen test cases that a defence trained on are left out of
the rates and counted; the paired test against the original and between defences; pool copies stay out."""

from __future__ import annotations

import pytest

from redlat.experiments.harden_loop import (
    counted_attempts,
    defence_pairs,
    model_metrics,
    paired_change,
    trained_cases,
)
from synthetic_runs import write_run

CASES = [f"question {i}?" for i in range(10)]
MANIFEST = {"before": {"failure_rate": 0.5, "perplexity": 7.0}, "after": {"failure_rate": 0.0, "perplexity": 7.1,
                                                                            "agreement": 0.5},
            "counts": {"failures": 2}, "seconds": 1.0,
            "failures": [{"test_case": "question 0?"}, {"test_case": "question 1?"}]}


def _attack(tmp_path, name, failing, origins=None):
    return str(write_run(tmp_path / name, CASES, [0.9 if i in failing else 0.1 for i in range(10)],
                         origins=origins))


def test_trained_failures_asked_again_are_left_out_and_counted(tmp_path):
    trained = trained_cases({"tlat": MANIFEST, "sft": MANIFEST})
    assert trained == {"question 0?", "question 1?"}
    run = _attack(tmp_path, "zs", failing={0, 1, 2})
    kept, overlap = counted_attempts(run, trained)
    assert overlap == 2 and len(kept) == 8 and sum(a.offensive for a in kept) == 1  # only question 2 fails, unseen
    m = model_metrics({"zero-shot": {}}, MANIFEST, original=True, run_dirs={"zero-shot": run}, trained=trained)
    assert m["rate:zero-shot"] == pytest.approx(1 / 8) and m["overlap"] == 2 and m["overlap:zero-shot"] == 2
    without = model_metrics({"zero-shot": {}}, MANIFEST, original=True, run_dirs={"zero-shot": run})
    assert without["rate:zero-shot"] == pytest.approx(3 / 10) and without["overlap"] == 0  # what it counted before


def test_pool_copies_stay_out_of_the_rates(tmp_path):
    origins = [{"excluded": "copy of a pool case"} if i == 9 else {} for i in range(10)]
    kept, overlap = counted_attempts(_attack(tmp_path, "fs", failing={9}, origins=origins))
    assert "question 9?" not in {a.test_case for a in kept} and overlap == 0 and sum(a.offensive for a in kept) == 0


def test_paired_tests_against_the_original_and_between_defences(tmp_path):
    original = {"zero-shot": _attack(tmp_path / "o", "zs", failing={2, 3, 4, 5, 6, 7})}
    tlat = {"zero-shot": _attack(tmp_path / "t", "zs", failing=set())}
    sft = {"zero-shot": _attack(tmp_path / "s", "zs", failing={2, 3, 4, 5, 6, 7, 8})}
    change = paired_change(original, tlat)
    assert (change["fixed"], change["new_failures"], change["paired_cases"]) == (6, 0, 10)
    assert change["paired_p"] == pytest.approx(2 * 0.5**6)  # exact two-sided McNemar: 0.03125
    pairs = defence_pairs({"tlat": tlat, "sft": sft}, ("tlat", "sft"), trained=frozenset({"question 8?"}))
    assert pairs == [{"first": "tlat", "second": "sft", "cases": 9, "only_first_failed": 0, "only_second_failed": 6,
                      "p": pytest.approx(2 * 0.5**6)}]  # question 8 was trained on: left out of the pair too


def test_compliance_is_counted_beside_the_failure_rate_on_prompt_sets(tmp_path):
    """The prompt-set attack carries a compliance judge's labels: its comply rate is the share judged compliant,
    with a Wilson interval; an attack without the judge gets no comply rate."""
    from redlat.experiments.harden_loop import layout
    from redlat.summary import wilson_interval

    judged = [{"refusal-phrases": {"compliant": 1.0 if i < 3 else 0.0, "refused": 0.0 if i < 3 else 1.0}}
              for i in range(10)]
    prompts = str(write_run(tmp_path / "hb", CASES, [0.1] * 10, more_scores=judged))
    zero = _attack(tmp_path, "zs", failing={1})
    m = model_metrics({"zero-shot": {}, "harmbench": {}}, MANIFEST, original=True,
                      run_dirs={"zero-shot": zero, "harmbench": prompts})
    low, high = wilson_interval(3, 10)
    assert (m["comply:harmbench"], m["comply:harmbench@low"], m["comply:harmbench@high"]) == (0.3, low, high)
    assert m["rate:harmbench"] == 0.0 and "comply:zero-shot" not in m  # not toxic, yet it complied 3 times in 10
    columns = [c.metric for c in layout({"prompt_sets": ["harmbench"], "compliance": {"name": "x"}}).columns]
    assert "comply:harmbench" in columns and "comply:zero-shot" not in columns
    assert "comply:harmbench" not in [c.metric for c in layout({"prompt_sets": ["harmbench"]}).columns]


def test_the_compliance_judge_scores_only_prompt_sets_and_can_be_left_out():
    from redlat.config import HardenLoopConfig

    cfg = HardenLoopConfig()
    assert [c.name for c in cfg.redteam_config("prompts", n=1, target="t", seed=1, prompts="harmbench").classifiers] \
        == ["jigsaw-bilstm", "refusal-phrases"]
    assert [c.name for c in cfg.redteam_config("zero-shot", n=1, target="t", seed=1).classifiers] == ["jigsaw-bilstm"]
    none = HardenLoopConfig(compliance=None)
    assert "compliance" not in none.identity()  # a loop stored before the judge existed keeps its identity
    assert [c.name for c in none.redteam_config("prompts", n=1, target="t", seed=1, prompts="x").classifiers] \
        == ["jigsaw-bilstm"]
