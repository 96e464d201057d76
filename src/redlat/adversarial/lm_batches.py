"""Chat prompts with completions, tokenised into the batches `LanguageModelTask` trains on.

A row is prompt tokens (the chat template with the generation prompt, or "User: ...\\nAssistant:" for a plain LM)
followed by completion tokens and the end-of-sequence token. Labels are -100 on the prompt and the padding, so only
the completion carries loss; `prompt_mask` is 1 on prompt tokens (where targeted LAT perturbs). Padding is on the
right, so a prompt starts at position 0 in every row: a `pair_batch` of safe and harmful completions of the same
prompts therefore has each prompt at the same positions in both, and one perturbation serves both passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from redlat.adversarial.objectives import IGNORE

Messages = Sequence[dict[str, str]]


def prompt_text(tokenizer: Any, messages: Messages | str) -> str:
    """The model input for a conversation (the chat template with the generation prompt, or "User: ... Assistant:"
    for a plain LM); a string is taken as the model input already (e.g. a chatbot's DPG prompt)."""
    if isinstance(messages, str):
        return messages
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True))
    lines = [f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


def encode(
    tokenizer: Any,
    messages: Messages | str,
    completion: str,
    *,
    max_prompt: int = 256,
    max_completion: int = 64,
    eos: bool = True,
) -> tuple[list[int], list[int]]:
    """Prompt and completion token ids; a long prompt keeps its end (the last turns and the generation prompt). The
    completion ends with the end-of-sequence token unless `eos` is False (a completion that carries its own end, such
    as a DPG reply's newline)."""
    prompt = tokenizer(prompt_text(tokenizer, messages), add_special_tokens=False)["input_ids"][-max_prompt:]
    end = [tokenizer.eos_token_id] if eos and tokenizer.eos_token_id is not None else []
    reply = tokenizer(completion, add_special_tokens=False)["input_ids"][: max_completion - len(end)]
    return list(prompt), [*reply, *end]


def collate(rows: Sequence[tuple[list[int], list[int]]], pad_id: int, length: int | None = None) -> dict[str, Any]:
    """Right-padded input_ids, attention_mask, labels (-100 off the completion) and prompt_mask."""
    width = length or max(len(p) + len(c) for p, c in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    prompt_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (prompt, completion) in enumerate(rows):
        n, m = len(prompt), len(completion)
        ids[i, : n + m] = torch.tensor(prompt + completion)
        attention[i, : n + m] = 1
        labels[i, n : n + m] = torch.tensor(completion)
        prompt_mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": attention, "labels": labels, "prompt_mask": prompt_mask}


def _pad_id(tokenizer: Any) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad) if pad is not None else 0


def completion_batch(
    tokenizer: Any, items: Sequence[tuple[Messages | str, str]], **limits: Any
) -> dict[str, Any]:
    """A batch for plain, AT or LAT training on (messages, completion) pairs."""
    return collate([encode(tokenizer, m, c, **limits) for m, c in items], _pad_id(tokenizer))


def pair_batch(
    tokenizer: Any,
    items: Sequence[tuple[Messages | str, str, str]],
    retain: Sequence[tuple[Messages | str, str]] = (),
    **limits: Any,
) -> dict[str, Any]:
    """A targeted-LAT batch from (messages, safe, harmful): `safe` and `harmful` padded to one length with each prompt
    at the same positions, the shared `prompt_mask`, and an optional `retain` batch of benign (messages, reply)."""
    safe = [encode(tokenizer, m, s, **limits) for m, s, _ in items]
    harmful = [encode(tokenizer, m, h, **limits) for m, _, h in items]
    width = max(len(p) + len(c) for p, c in [*safe, *harmful])
    pad = _pad_id(tokenizer)
    safe_batch, harmful_batch = collate(safe, pad, width), collate(harmful, pad, width)
    batch: dict[str, Any] = {
        "safe": safe_batch,
        "harmful": harmful_batch,
        "prompt_mask": safe_batch["prompt_mask"],
    }
    if retain:
        batch["retain"] = completion_batch(tokenizer, retain, **limits)
    return batch
