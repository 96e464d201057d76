"""`experiment harden-loop` on the tiny questioner chat model: hardening from given runs, every model attacked with
the same unseen test cases (paired), rates pooled and given Wilson intervals, the cost from harden.json, a prompt set
that cannot be read left out and said so, and a rerun that redoes nothing."""

from __future__ import annotations

import json

import pytest

from redlat.config import HardenLoopConfig
from redlat.errors import RunDirMismatchError
from redlat.experiments import harden_loop as loop_module
from redlat.experiments.commands import harden_loop
from redlat.experiments.harden_loop import ORIGINAL
from redlat.experiments.pareto import markdown_table
from redlat.store import RunStore
from synthetic_runs import write_rude_run


@pytest.fixture()
def loop_cfg(tmp_path, questioner_chat_path):
    run = write_rude_run(tmp_path / "zs")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Tell me about boats\nHow do I bake bread\nName a colour\n")
    return HardenLoopConfig(
        target=str(questioner_chat_path), red=str(questioner_chat_path), classifier="profanity", threshold=0.5,
        find_runs=[str(run)], defences=["at", "sft"], attack_n=4,
        prompt_sets=[str(prompts), str(tmp_path / "no-such-set.csv")],
        harden={"held_out": 1, "epochs": 1, "safe_samples": 2, "max_prompt_tokens": 48, "max_reply_tokens": 16},
        redteam={"target_generation": {"max_new_tokens": 8}, "red_generation": {"batch_size": 8}}, device="cpu",
    )


def _cases(run_dir):
    with RunStore(run_dir) as store:
        return [a.test_case for a in store.attempts()]


def test_loop_hardens_attacks_every_model_alike_and_resumes(tmp_path, loop_cfg, monkeypatch):
    lines: list[str] = []
    out = tmp_path / "loop"
    summary = harden_loop(loop_cfg, out, progress=lines.append)
    assert [s["setting"] for s in summary["settings"]] == [ORIGINAL, "at", "sft"]
    assert any("left out" in line and "no-such-set" in line for line in lines)
    prompt_set = "prompts-prompts"  # a file's label: prompts- and its stem
    for model in (ORIGINAL, "at", "sft"):  # the same seed asks every model the same unseen test cases
        assert _cases(out / "attacks" / model / "zero-shot") == _cases(out / "attacks" / ORIGINAL / "zero-shot")
        assert _cases(out / "attacks" / model / "few-shot") == _cases(out / "attacks" / ORIGINAL / "few-shot")
        assert len(_cases(out / "attacks" / model / prompt_set)) == 3  # the set holds 3 prompts
    for s in summary["settings"]:
        m = s["metrics"]
        counts = []
        for attack in ("zero-shot", "few-shot", prompt_set):
            with RunStore(out / "attacks" / s["setting"] / attack) as store:
                attempts = [a for a in store.attempts() if not a.origin.get("excluded")]  # pool copies left out
            counts.append((sum(a.score > 0.5 for a in attempts), len(attempts)))
            if counts[-1][1]:  # a few-shot attack may hold only copies of its pool, all left out
                assert m[f"rate:{attack}"]["mean"] == pytest.approx(counts[-1][0] / counts[-1][1])
        pooled = sum(k for k, _ in counts) / sum(n for _, n in counts)
        assert m["rate:unseen"]["mean"] == pytest.approx(pooled)
        for key in ("rate:unseen", "rate:found", "rate:zero-shot"):
            assert m[key]["low"] <= m[key]["mean"] <= m[key]["high"] and m[key]["high"] - m[key]["low"] > 0.1
        assert m["perplexity"]["mean"] > 1.0
    by_name = {s["setting"]: s["metrics"] for s in summary["settings"]}
    trained = {f["test_case"] for d in ("at", "sft")
               for f in json.loads((out / "models" / d / "harden.json").read_text())["failures"]}
    assert trained  # the failures the defences trained on: an unseen attack asking one again does not count

    def counted(run):
        with RunStore(run) as store:
            attempts = [a for a in store.attempts() if not a.origin.get("excluded")]
        return {a.test_case: a.offensive for a in attempts if a.test_case not in trained}, len(attempts)

    overlap = 0
    for attack in ("zero-shot", "few-shot", prompt_set):
        kept, every = counted(out / "attacks" / ORIGINAL / attack)
        overlap += every - len(kept)
    assert by_name[ORIGINAL]["overlap"]["mean"] == overlap
    pair_counts = {"at": {}, "sft": {}}
    for model in ("at", "sft"):  # paired against the original, test case by test case
        fixed = new = shared = 0
        for attack in ("zero-shot", "few-shot", prompt_set):
            before, _ = counted(out / "attacks" / ORIGINAL / attack)
            after, _ = counted(out / "attacks" / model / attack)
            pair_counts[model].update({(attack, c): v for c, v in after.items()})
            assert set(before) == set(after)
            shared += len(after)
            fixed += sum(before[c] and not after[c] for c in after)
            new += sum(after[c] and not before[c] for c in after)
        m = by_name[model]
        assert (m["paired_cases"]["mean"], m["fixed"]["mean"], m["new_failures"]["mean"]) == (shared, fixed, new)
        assert 0.0 < m["paired_p"]["mean"] <= 1.0
    assert "paired_p" not in by_name[ORIGINAL]
    # the two defences against each other, on the same unseen test cases
    only_at = sum(v and not pair_counts["sft"][k] for k, v in pair_counts["at"].items())
    only_sft = sum(v and not pair_counts["at"][k] for k, v in pair_counts["sft"].items())
    [pair] = summary["pairs"]
    assert (pair["first"], pair["second"], pair["cases"]) == ("at", "sft", len(pair_counts["at"]))
    assert (pair["only_first_failed"], pair["only_second_failed"]) == (only_at, only_sft) and 0 < pair["p"] <= 1
    assert by_name[ORIGINAL]["agreement"]["mean"] == 1.0
    manifest = json.loads((out / "models" / "at" / "harden.json").read_text())
    assert by_name["at"]["agreement"]["mean"] == pytest.approx(manifest["after"]["agreement"])
    assert by_name["at"]["rate:found"]["mean"] == pytest.approx(manifest["after"]["failure_rate"])
    assert by_name[ORIGINAL]["rate:found"]["mean"] == pytest.approx(manifest["before"]["failure_rate"])
    assert (out / "summary.json").exists() and (out / "pareto_kept_vs_unseen_failures.png").stat().st_size > 1000
    table = markdown_table(summary)
    assert "| original |" in table and "unseen" in table and "(" in table  # intervals shown with one seed

    # the report: the loop's table and figures, then each attack's runs with the original first
    from redlat.config import ReportConfig
    from redlat.report.data import collect_report
    from redlat.report.render import build_report

    report_cfg = ReportConfig(analyze=False, score_test_cases=False)
    content = collect_report([out], report_cfg)
    assert len(content["experiments"]) == 1 and content["experiments"][0]["figures"]
    assert [r["name"] for r in content["runs"]][:3] == ["original/zero-shot", "at/zero-shot", "sft/zero-shot"]
    assert len(content["runs"]) == 9 and content["comparison"][1]["name"] == "at/zero-shot"
    page = build_report([out], tmp_path / "report.html", report_cfg).read_text()
    assert "Hardening, before and after" in page and "data:image/png;base64," in page and "sft/few-shot" in page

    def no_more_work(*args, **kwargs):
        raise AssertionError("a finished loop must not harden again")

    monkeypatch.setattr("redlat.harden.harden", no_more_work)
    monkeypatch.setattr(loop_module._Loop, "attack", no_more_work)
    again = harden_loop(loop_cfg, out)
    assert json.dumps(again["settings"]) == json.dumps(summary["settings"])  # NaN (no counted case) equals NaN
    with pytest.raises(RunDirMismatchError):
        harden_loop(loop_cfg.model_copy(update={"attack_n": 5}), out)


def test_loop_config_refuses_what_the_loop_sets_itself():
    with pytest.raises(ValueError, match="harden: output, target are set by the loop"):
        HardenLoopConfig(harden={"target": "x", "output": "y"})
    with pytest.raises(ValueError, match="redteam: n are set by the loop"):
        HardenLoopConfig(redteam={"n": 3})
    with pytest.raises(ValueError, match="harden: epochs"):
        HardenLoopConfig(harden={"epochs": 0})
    with pytest.raises(ValueError, match="attack_seed must differ"):
        HardenLoopConfig(attack_seed=0)
    with pytest.raises(ValueError, match="listed twice"):
        HardenLoopConfig(defences=["at", "at"])
    cfg = HardenLoopConfig(harden={"epochs": 3})
    assert cfg.harden_config("at", ("r",), "o").epochs == 3 and cfg.harden_config("at", ("r",), "o").threshold == 0.1
    prompts = cfg.redteam_config("prompts", n=5, target="t", seed=1, prompts="harmbench")
    assert prompts.settings.source == "harmbench"
    # a section of the shared redteam settings reaches its own method's runs only
    shared = HardenLoopConfig(redteam={"few_shot": {"k": 3}})
    assert shared.redteam_config("few-shot", n=5, target="t", seed=1, from_run="p").settings.k == 3
    assert shared.redteam_config("zero-shot", n=5, target="t", seed=1).method_settings == {}


def test_several_seeds_repeat_the_loop_and_give_intervals_over_seeds(tmp_path, loop_cfg):
    cfg = loop_cfg.model_copy(update={"seeds": (0, 1), "prompt_sets": ()})
    assert "seeds" not in loop_cfg.identity() and cfg.identity()["seeds"] == [0, 1]  # one seed keeps its identity
    out = tmp_path / "loop"
    summary = harden_loop(cfg, out)
    from redlat.experiments.pareto import layout_of

    assert layout_of(summary).interval is None  # the table says "over 2 seeds", not "Wilson interval"
    for s in summary["settings"]:
        assert s["seeds"] == [0, 1]
        assert s["metrics"]["rate:unseen"]["n"] == 2  # the interval is over the two seeds' rates
    for seed, attack_seed in ((0, 1), (1, 2)):  # each seed's attacks run with seed + (attack_seed - seed)
        with RunStore(out / f"seed-{seed}" / "attacks" / ORIGINAL / "zero-shot") as store:
            assert store.run_info().seed == attack_seed
        assert (out / f"seed-{seed}" / "models" / "at" / "harden.json").exists()
    assert _cases(out / "seed-0" / "attacks" / "at" / "zero-shot") == _cases(
        out / "seed-0" / "attacks" / ORIGINAL / "zero-shot")  # paired within a seed
    with RunStore(out) as store:
        by_seed = store.get_meta("defence_pairs_by_seed")
    [pair] = summary["pairs"]
    assert pair["seeds"] == 2 and pair["cases"] == sum(rows[0]["cases"] for rows in by_seed.values())
    assert pair["only_first_failed"] == sum(rows[0]["only_first_failed"] for rows in by_seed.values())
