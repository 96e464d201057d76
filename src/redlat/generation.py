"""Batched sampling from a causal LM: left padding, length bucketing, per-sequence newline stop, derived seeds.

Every sampling call is seeded from (run seed, round, stage, batch), so a resumed run draws exactly what an
uninterrupted one would have drawn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from redlat.models.causal_lm import LoadedLM


@dataclass(frozen=True)
class SamplingSettings:
    """Decoding settings, recorded with the run. Pure nucleus sampling: top-k is off."""

    top_p: float
    temperature: float
    max_new_tokens: int
    stop_at_newline: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "top_k": 0, "do_sample": True, "repetition_penalty": 1.0}


def derive_seed(base: int, *keys: object) -> int:
    """A 63-bit seed that depends only on the run seed and the position of the sampling call."""
    blob = "/".join([str(base), *map(str, keys)]).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") >> 1


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), so left padding wastes little."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def newline_token_mask(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Boolean mask over the vocabulary: True for tokens whose text contains a newline."""
    import torch

    mask = torch.zeros(vocab_size, dtype=torch.bool)
    ids = list(range(min(vocab_size, len(tokenizer))))
    for token_id, text in zip(ids, tokenizer.batch_decode([[i] for i in ids]), strict=True):
        if "\n" in text:
            mask[token_id] = True
    return mask


class _StopAtNewline:
    """A stopping criterion that finishes each sequence once it has produced a newline token."""

    def __init__(self, mask: torch.Tensor, prompt_length: int) -> None:
        self.mask = mask
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        new = input_ids[:, self.prompt_length :]
        if new.shape[1] == 0:
            return new.new_zeros(new.shape[0], dtype=bool)
        return self.mask.to(new.device)[new].any(dim=1)


class Sampler:
    """Samples continuations of text prompts from one loaded LM, batched."""

    def __init__(self, lm: LoadedLM, settings: SamplingSettings, *, batch_size: int) -> None:
        self.lm = lm
        self.settings = settings
        self.batch_size = batch_size
        self._newline_mask: torch.Tensor | None = None

    def _mask(self) -> torch.Tensor:
        if self._newline_mask is None:
            vocab = self.lm.model.get_output_embeddings().weight.shape[0]
            self._newline_mask = newline_token_mask(self.lm.tokenizer, vocab)
        return self._newline_mask

    def _generation_config(self) -> Any:
        from transformers import GenerationConfig

        tok = self.lm.tokenizer
        eos = self.lm.model.generation_config.eos_token_id
        if eos is None:
            eos = tok.eos_token_id
        return GenerationConfig(
            do_sample=True,
            top_p=self.settings.top_p,
            top_k=0,
            temperature=self.settings.temperature,
            repetition_penalty=1.0,
            max_new_tokens=self.settings.max_new_tokens,
            pad_token_id=tok.pad_token_id,
            eos_token_id=eos,
        )

    def sample(self, prompts: Sequence[str], *, seed: int, add_special_tokens: bool = True) -> list[str]:
        """One continuation per prompt, in the order given, cut at the first newline if so configured."""
        import torch
        from transformers import StoppingCriteriaList

        if not prompts:
            return []
        tok = self.lm.tokenizer
        encoded = [tok(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
        config = self._generation_config()
        out: list[str] = [""] * len(prompts)
        for batch_no, batch in enumerate(length_buckets([len(e) for e in encoded], self.batch_size)):
            width = max(len(encoded[i]) for i in batch)
            pad = tok.pad_token_id
            input_ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in batch])
            attention = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in batch])
            stopping = StoppingCriteriaList()
            if self.settings.stop_at_newline:
                stopping.append(_StopAtNewline(self._mask(), width))
            torch.manual_seed(derive_seed(seed, batch_no))
            with torch.inference_mode():
                generated = self.lm.model.generate(
                    input_ids=input_ids.to(self.lm.device),
                    attention_mask=attention.to(self.lm.device),
                    generation_config=config,
                    stopping_criteria=stopping,
                )
            texts = tok.batch_decode(generated[:, width:].cpu(), skip_special_tokens=True)
            for i, text in zip(batch, texts, strict=True):
                out[i] = text.split("\n", 1)[0] if self.settings.stop_at_newline else text
        return out
