"""peft LoRA adapters from redlat's LoraSettings: one place for the red-team trainers (SFT, GRPO) and the adversarial
trainers."""

from __future__ import annotations

from typing import Any

from redlat.config import LoraSettings


def lora_config(settings: LoraSettings) -> Any:
    """A peft LoraConfig for a causal LM, or None for full fine-tuning."""
    if not settings.enabled:
        return None
    from peft import LoraConfig

    targets = settings.target_modules
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets if isinstance(targets, str) else list(targets),
        task_type="CAUSAL_LM",
    )
