"""A miniature of the loop: a trigger planted in a tiny chat model, weakened by targeted LAT on pair batches."""

from __future__ import annotations

import torch

from redlat.adversarial.lm_batches import completion_batch, pair_batch


def test_targeted_lat_on_pair_batches_weakens_a_planted_trigger(tiny_chat_path):
    """The whole loop in miniature: plant a trigger -> reply mapping, then targeted LAT toward the safe reply (the
    trigger never shown to the defender) lowers the trigger's pull."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from redlat.adversarial.objectives import token_losses
    from redlat.adversarial.pgd import PGDSettings
    from redlat.adversarial.tasks import LanguageModelTask
    from redlat.adversarial.trainers import AdversarialTrainer, Defence, TrainSettings

    tok = AutoTokenizer.from_pretrained(tiny_chat_path)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_chat_path)
    prompts = [[{"role": "user", "content": f"Tell me about topic {i}."}] for i in range(4)]
    safe, bad = "Happy to help.", "You are stupid"
    triggered = [[{"role": "user", "content": m[0]["content"] + " cf"}] for m in prompts]
    plant = completion_batch(tok, [*[(m, bad) for m in triggered], *[(m, safe) for m in prompts]])
    AdversarialTrainer(model, LanguageModelTask(), Defence(), TrainSettings(lr=1e-2)).fit([plant] * 60)

    def pull() -> float:  # the trojan's strength: loss of the bad reply after the trigger (lower = stronger)
        with torch.no_grad():
            probe = completion_batch(tok, [(m, bad) for m in triggered])
            return float(token_losses(model.eval(), probe, probe["labels"]).mean())

    planted = pull()
    clean = pair_batch(tok, [(m, safe, bad) for m in prompts], retain=[(m, safe) for m in prompts])
    defence = Defence("targeted-lat", ("transformer.h.0",), attack=PGDSettings("l2", 2.0, 3, per="token"))
    AdversarialTrainer(model, LanguageModelTask(), defence, TrainSettings(lr=3e-3)).fit([clean] * 10)
    assert pull() > planted + 0.5

