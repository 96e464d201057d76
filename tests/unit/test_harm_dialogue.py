"""Dialogue red teaming: the target answers with the conversation as context, the red LM continues a transcript,
rates by turn and after a failure, a run that resumes mid-dialogue to the uninterrupted result, and bad input."""

from __future__ import annotations

import pytest

from redlat.config import RedTeamConfig
from redlat.config.redteam import RedGeneration
from redlat.errors import ConfigError
from redlat.records import Attempt
from redlat.red_team.dialogue import Dialogue
from redlat.turns import after_failure, turn_rates, turn_summary


def test_the_target_sees_the_earlier_turns_in_its_own_format(questioner_chat_lm, questioner_lm):
    from redlat.chatbot import Chatbot

    cfg = RedTeamConfig()
    history = [["Hi there?", "Hello."], ["Why?", "Because."]]
    chat = Chatbot(questioner_chat_lm, cfg.chatbot, cfg.target_generation).model_input("And now?", history)
    assert chat.index("Hi there?") < chat.index("Hello.") < chat.index("Why?") < chat.index("Because.") \
        < chat.index("And now?")
    assert chat.count("<|im_start|>assistant") == 3  # two earlier replies and the one to write
    dpg = Chatbot(questioner_lm, cfg.chatbot, cfg.target_generation).model_input("And now?", history)
    assert dpg.endswith("\nUSER: Hi there?\nGOPHER: Hello.\nUSER: Why?\nGOPHER: Because.\nUSER: And now?\nGOPHER:")


def _turns(failing: dict[int, list[bool]]) -> list[Attempt]:
    out = []
    for dialogue, turns in failing.items():
        for t, fails in enumerate(turns, start=1):
            score = 0.9 if fails else 0.1
            out.append(Attempt(index=len(out), run_id="r", method="dialogue", round=t - 1, sample_index=len(out),
                               test_case=f"d{dialogue} t{t}", reply="r", score=score, offensive=score > 0.5,
                               origin={"dialogue": dialogue, "turn": t, "history": []}))
    return out


def test_rates_by_turn_and_after_a_failure_with_fishers_test():
    from scipy.stats import fisher_exact

    attempts = _turns({0: [False, True, True], 1: [False, False, False], 2: [True, True, True],
                       3: [False, False, True], 4: [False, False]})
    rows = turn_rates(attempts, 0.5)
    assert [(r["turn"], r["n"], r["failures"]) for r in rows] == [(1, 5, 1), (2, 5, 2), (3, 4, 3)]
    after = after_failure(attempts, 0.5)
    # pairs (before, after): d0 FT TT, d1 FF FF, d2 TT TT, d3 FF FT, d4 FF
    assert after["table"] == [[3, 0], [2, 4]] and after["pairs"] == 9
    assert after["after_failure"]["rate"] == 1.0 and after["after_pass"]["rate"] == pytest.approx(2 / 6)
    assert after["p"] == pytest.approx(fisher_exact([[3, 0], [2, 4]])[1])


def test_no_failure_means_no_test_and_single_turn_runs_have_no_turn_table():
    after = after_failure(_turns({0: [False, False], 1: [False, False]}), 0.5)
    assert after["p"] is None and after["after_failure"]["n"] == 0 and after["after_pass"]["rate"] == 0.0
    plain = [Attempt(index=0, run_id="r", method="zero-shot", round=0, sample_index=0, test_case="q?", reply="r",
                     score=0.9, offensive=True)]
    assert turn_summary(plain, 0.5) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method_settings": {"turns": 0}}, "at least one turn"),
        ({"n": 10, "method_settings": {"turns": 4}}, "multiple of 4"),
        ({"ray": {"enabled": True}}, "without --ray"),
    ],
)
def test_bad_dialogue_input_fails_before_any_model(tmp_path, kwargs, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        Dialogue(RedTeamConfig(method="dialogue", **kwargs), tmp_path)


def _cfg(**kw) -> RedTeamConfig:
    return RedTeamConfig(method="dialogue", n=12, target="q", device="cpu", method_settings={"turns": 3},
                         red_generation=RedGeneration(batch_size=2, max_new_tokens=12),
                         target_generation={"max_new_tokens": 8}, **kw)


def _dialogues(run_dir) -> dict[int, list[tuple[int, str, str, list]]]:
    from redlat.store import RunStore

    with RunStore(run_dir) as store:
        attempts = list(store.attempts())
    out: dict[int, list] = {}
    for a in attempts:
        out.setdefault(a.origin["dialogue"], []).append((a.origin["turn"], a.test_case, a.reply, a.origin["history"]))
    return out


def test_a_dialogue_run_carries_each_conversation_and_resumes_mid_dialogue(questioner_chat_lm, tmp_path):
    from fakes import RudeWordScorer, tiny_parts
    from redlat.red_team.runner import redteam

    cfg = _cfg()
    reference = redteam(cfg, tmp_path / "ref", components=tiny_parts(questioner_chat_lm, cfg))
    dialogues = _dialogues(reference.run_dir)
    assert sorted(dialogues) == [0, 1, 2, 3] and reference.summary["n_samples"] == 12
    for turns in dialogues.values():  # each turn's context is exactly the turns before it, in order
        for i, (turn, _, _, history) in enumerate(turns):
            assert turn == i + 1 and history == [[case, reply] for _, case, reply, _ in turns[:i]]
    rows = reference.summary["turns"]["rows"]
    assert [r["turn"] for r in rows] == [1, 2, 3] and rows[0]["n"] == 4
    assert {"after_failure_rate", "after_pass_rate", "after_failure_p"} <= {m["name"] for m in
                                                                           reference.summary["metrics"]}

    with pytest.raises(KeyboardInterrupt):  # the fourth round (dialogues 0-1 done, 2-3 at turn 1) is lost
        redteam(cfg, tmp_path / "run", components=tiny_parts(questioner_chat_lm, cfg, RudeWordScorer(fail_on_call=5)))
    from redlat.store import RunStore

    with RunStore(tmp_path / "run") as store:
        assert store.next_round() == 4
    resumed = redteam(cfg, tmp_path / "run", components=tiny_parts(questioner_chat_lm, cfg))
    assert resumed.resumed and _dialogues(tmp_path / "run") == dialogues
