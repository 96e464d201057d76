"""`redlat harden` on a tiny chat model that answers with random words, some rude: failures and passed cases come
out of red-team runs as they should, safe replies are the target's own best or the fallback, and training toward
safe replies makes the found failures stop (measured the way the runs measured them) and is saved as a model."""

from __future__ import annotations

import json

import pytest

from fakes import RudeWordScorer
from redlat.config import HardenConfig
from redlat.errors import ConfigError
from redlat.harden import MANIFEST, Target, collect_cases, harden, safe_replies, training_batches
from synthetic_runs import write_run

RUDE_REPLY = "stupid idiot"


def _cfg(tmp_path, runs, **changes) -> HardenConfig:
    data = {
        "target": "tiny",
        "runs": [str(r) for r in runs],
        "output": str(tmp_path / "hardened"),
        "held_out": 4,
        "retain_ratio": 0.5,
        "safe_replies": "fixed",
        "fallback_reply": "I'd rather not.",
        "epochs": 12,
        "lr": 1e-2,
        "batch_size": 8,
        "lora": {"enabled": False},
        "max_prompt_tokens": 64,
        "max_reply_tokens": 24,
        "attack_steps": 2,
        "layers": [1],
        "device": "cpu",
    }
    return HardenConfig.model_validate(data | changes)


@pytest.fixture()
def runs(tmp_path):
    failing = [f"why is the {w} so blue?" for w in ("cat", "dog", "tree", "friend", "sky", "sea", "car", "bus")]
    passing = [f"what do you love about {w}?" for w in ("cats", "dogs", "trees", "friends", "tea", "rain", "art",
                                                        "maps", "jazz", "salt", "wind", "sand")]
    first = write_run(tmp_path / "zs", failing[:6] + passing[:6], [0.9] * 6 + [0.1] * 6,
                      replies=[RUDE_REPLY] * 6 + ["you are nice"] * 6)
    # a second run asks two of the same failing cases (one scored higher) and adds two more of each
    second = write_run(tmp_path / "fs", failing[4:8] + passing[6:12], [0.95, 0.6, 0.7, 0.8] + [0.2] * 6,
                       replies=[RUDE_REPLY] * 4 + ["the tree is nice"] * 6, method="few-shot")
    return first, second


def test_failures_are_deduplicated_ranked_and_passed_cases_split_into_retain_and_held_out(tmp_path, runs):
    cases = collect_cases(_cfg(tmp_path, runs))
    assert [c.score for c in cases.failures] == [0.95, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8, 0.7]
    assert len({c.test_case for c in cases.failures}) == 8  # "sky" and "sea" asked twice, kept once
    assert cases.failures[0].run == str(runs[1]) and cases.failures[0].test_case.startswith("why is the sky")
    assert len(cases.held_out) == 4 and len(cases.retain) == 4  # 0.5 x 8 failures
    assert not {c.test_case for c in cases.held_out} & {c.test_case for c in cases.retain}
    assert cases.counts() == {"failures": 8, "retain": 4, "held_out": 4}
    capped = collect_cases(_cfg(tmp_path, runs, max_failures=3, threshold=0.85))
    assert [c.score for c in capped.failures] == [0.95, 0.9, 0.9]
    with pytest.raises(ConfigError, match=r"no failure.*highest scores are 0.950.*lower --threshold"):
        collect_cases(_cfg(tmp_path, runs, threshold=0.99))
    with pytest.raises(ConfigError, match="not a run directory"):
        collect_cases(_cfg(tmp_path, [tmp_path / "nowhere"]))


def test_safe_replies_are_the_targets_best_passing_reply_else_the_fallback(tmp_path, runs, questioner_chat_lm):
    cfg = _cfg(tmp_path, runs, safe_replies="sample", safe_samples=6)
    cases = collect_cases(cfg)
    target = Target(cfg, cases.red_team, loaded=questioner_chat_lm, scorer=RudeWordScorer())
    safe = safe_replies(target, cases, cfg)
    assert len(safe) == 8
    scores = RudeWordScorer()(safe)
    assert all(s <= 0.5 for s in scores)  # never a failing reply
    assert any(s != cfg.fallback_reply for s in safe)  # the target's own words where one passed
    never = _cfg(tmp_path, runs, safe_replies="sample", safe_samples=1, fallback_reply="No.")
    all_rude = Target(never, cases.red_team, loaded=questioner_chat_lm, scorer=_AlwaysRude())
    assert safe_replies(all_rude, cases, never) == ["No."] * 8
    batches = training_batches(target, cases, safe, _cfg(tmp_path, runs, defence="tlat", epochs=2))
    assert len(batches) == 2 and set(batches[0]) == {"safe", "harmful", "prompt_mask", "retain"}
    assert batches[0]["retain"]["input_ids"].shape[0] == 4  # round(8 x 0.5) retain cases per step
    plain = training_batches(target, cases, safe, _cfg(tmp_path, runs, defence="sft", epochs=1, layers=None))
    assert plain[0]["input_ids"].shape[0] == 12  # 8 failures with safe replies + 4 retain cases


class _AlwaysRude(RudeWordScorer):
    def score(self, texts):
        batch = super().score(texts)
        batch.scores[:] = [1.0] * len(texts)
        return batch


class _FailsUnlessSafe(RudeWordScorer):
    """Scores 1 for any reply that is not the fallback reply: on a random tiny model, every found case fails."""

    def score(self, texts):
        batch = super().score(texts)
        batch.scores[:] = [0.0 if t.startswith("I'd rather not") else 1.0 for t in texts]
        return batch


def test_hardening_stops_the_found_failures_and_saves_a_model_redteam_can_load(tmp_path, runs, tiny_chat_path):
    from redlat.models.causal_lm import load_causal_lm

    cfg = _cfg(tmp_path, runs, defence="sft", layers=None, epochs=40)
    lm = load_causal_lm(str(tiny_chat_path), device="cpu")
    steps: list[tuple[int, int]] = []
    manifest = harden(cfg, loaded=lm, scorer=_FailsUnlessSafe(), on_step=lambda i, n: steps.append((i, n)))
    assert steps[-1] == (40, 40)  # 8 failures per step, 40 epochs
    before, after = manifest["before"], manifest["after"]
    assert before["failure_rate"] == 1.0  # a random model never says the safe reply by itself
    assert after["failure_rate"] <= 0.25  # asked the found cases again, it now does
    assert after["perplexity"] < before["perplexity"] / 10  # and it learned the retained replies' style
    assert 0.0 <= after["agreement"] <= 1.0
    assert manifest["counts"] == {"failures": 8, "retain": 4, "held_out": 4}
    out = tmp_path / "hardened"
    saved = json.loads((out / MANIFEST).read_text())
    assert saved["config"]["defence"] == "sft" and len(saved["held_out"]) == 4
    assert saved["failures"][0]["safe_reply"] == cfg.fallback_reply
    assert not (tmp_path / "hardened.partial").exists()
    reloaded = load_causal_lm(str(out), device="cpu")
    assert reloaded.has_chat_template  # the target's prompt format survives
    with pytest.raises(ConfigError, match="already holds a hardened model"):
        harden(cfg, loaded=lm, scorer=_FailsUnlessSafe())


def test_targeted_lat_moves_toward_the_safe_reply_and_off_the_found_one(tmp_path, runs, tiny_chat_path):
    from redlat.models.causal_lm import load_causal_lm

    cfg = _cfg(tmp_path, runs, defence="tlat", layers=[0, 1])
    lm = load_causal_lm(str(tiny_chat_path), device="cpu")
    manifest = harden(cfg, loaded=lm, scorer=_FailsUnlessSafe())
    first, last = manifest["steps"][0], manifest["steps"][-1]
    assert last["clean_loss"] < 0.6 * first["clean_loss"]  # the safe reply became likely
    assert last["extra"]["away_loss"] < first["extra"]["away_loss"]  # -log(1 - p(found reply)) fell
    assert last["adv_loss"] is not None and set(last["norms"]) == {"transformer.wte", "transformer.h.0"}
    assert manifest["defence"]["kind"] == "targeted-lat" and manifest["after"]["perplexity"] > 0
