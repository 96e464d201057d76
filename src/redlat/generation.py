"""Batched sampling from a causal LM: length bucketing, left padding, a shared-prefix KV cache, per-sequence
newline stop, fast nucleus sampling, derived seeds.

Speed, measured on 2 CPU cores with SmolLM2-135M (see benchmarks/):
- Prompts that share a long prefix (the DPG prompt, a chat template's system turn) have that prefix run through
  the model once; its KV cache is reused by every batch (padding then sits between prefix and suffix, masked),
  written into a preallocated StaticCache so that decoding never re-copies it.
- transformers' top-p warper sorts the whole vocabulary at every step, and its multinomial draws over the whole
  vocabulary: at batch 64 that is ~160 ms + ~70 ms a step, about as much as the model's forward pass. `NucleusDraw`
  finds the same nucleus from a top-K partial sort (falling back to a full sort when the nucleus is larger than K),
  draws within it, and hands generate a one-hot score, so generate runs its cheap greedy step.

Every sampling call is seeded from (run seed, round, stage, batch), so a resumed run draws exactly what an
uninterrupted one would have drawn.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from redlat.models.causal_lm import LoadedLM


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingSettings:
    """Decoding settings, recorded with the run. Pure nucleus sampling: top-k is off."""

    top_p: float
    temperature: float
    max_new_tokens: int
    stop_at_newline: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "top_k": 0, "do_sample": True, "repetition_penalty": 1.0, "sampler": "nucleus-draw"}


# Every GenerationConfig field that changes which token is drawn, pinned to the value that leaves the distribution
# alone. transformers fills a field the caller leaves unset from the model's own generation_config.json, so a model
# that ships e.g. repetition_penalty=1.05 would otherwise be sampled with it while the run records 1.0.
NEUTRAL_GENERATION = {
    "do_sample": False,  # greedy over NucleusDraw's one-hot scores: the draw itself happens in NucleusDraw
    "num_beams": 1,
    "temperature": 1.0,  # the warpers below only run with do_sample=True; pinned anyway, at their neutral values
    "top_p": 1.0,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "length_penalty": 1.0,
    "min_length": 0,
    "min_new_tokens": None,
    "bad_words_ids": None,
    "sequence_bias": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "exponential_decay_length_penalty": None,
    "renormalize_logits": False,
    "guidance_scale": None,
    "watermarking_config": None,
    "stop_strings": None,
}
# The fields of NEUTRAL_GENERATION recorded with a run, as generate() really resolved them.
RECORDED_FIELDS = tuple(k for k in NEUTRAL_GENERATION if k not in ("do_sample", "num_beams"))


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


class NucleusDraw:
    """A logits processor that samples the next token by nucleus (top-p) sampling and returns a one-hot score.

    The nucleus is the smallest set of most-probable tokens whose probability reaches `top_p` (the token that
    crosses the threshold is included), as in transformers' TopPLogitsWarper. Used with greedy decoding, whose
    argmax then picks the drawn token.
    """

    def __init__(self, top_p: float, temperature: float, candidates: int = 1024) -> None:
        self.top_p = top_p
        self.temperature = temperature
        self.candidates = candidates

    def nucleus(self, probs: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(candidate ids, their probabilities zeroed outside the nucleus, rows whose nucleus is wider than k)."""
        top_probs, top_ids = probs.topk(k, dim=-1)  # (batch, k), most probable first
        exclusive = top_probs.cumsum(dim=-1) - top_probs  # mass strictly before each candidate
        keep = exclusive < self.top_p
        wider = keep[:, -1] & (exclusive[:, -1] + top_probs[:, -1] < self.top_p)
        if k == probs.shape[-1]:
            wider = wider.new_zeros(wider.shape)
        return top_ids, top_probs * keep, wider

    def draw(self, scores: torch.Tensor) -> torch.Tensor:
        """The drawn token id per row, shape (batch, 1)."""
        import torch

        probs = torch.softmax(scores.float() / self.temperature, dim=-1)
        vocab = probs.shape[-1]
        ids, weights, wider = self.nucleus(probs, min(self.candidates, vocab))
        chosen = ids.gather(1, torch.multinomial(weights, 1))
        if wider.any():  # rare: a flat distribution whose nucleus holds more than `candidates` tokens
            rows = wider.nonzero().squeeze(1)
            full_ids, full_weights, _ = self.nucleus(probs[rows], vocab)
            chosen[rows] = full_ids.gather(1, torch.multinomial(full_weights, 1))
        return chosen

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, self.draw(scores), 0.0)


MIN_SHARED_PREFIX = 8  # tokens; shorter shared prefixes are not worth a cache


def shared_prefix_length(encoded: Sequence[Sequence[int]]) -> int:
    """Tokens all prompts share at the start, leaving every prompt at least one token of its own."""
    if not encoded:
        return 0
    limit = min(len(e) for e in encoded) - 1
    first = encoded[0]
    length = 0
    while length < limit and all(e[length] == first[length] for e in encoded):
        length += 1
    return length


def end_token_ids(lm: LoadedLM) -> list[int]:
    """The tokens a sample ends at: the model's end of sequence (its generation config's, which for chat models is the
    end of turn) and the tokenizer's, each once."""
    eos = lm.model.generation_config.eos_token_id
    ids = list(eos) if isinstance(eos, list | tuple) else [] if eos is None else [eos]
    if lm.tokenizer.eos_token_id is not None and lm.tokenizer.eos_token_id not in ids:
        ids.append(lm.tokenizer.eos_token_id)
    return ids


def encode_with_shared_prefix(
    tokenizer: Any, prompts: Sequence[str], *, add_special_tokens: bool, reuse_prefix: bool = True
) -> tuple[tuple[int, ...], list[list[int]]]:
    """The prompts' token ids split into the prefix they all share (empty when shorter than MIN_SHARED_PREFIX or not
    reused) and each prompt's own suffix: what every engine computes once, and what it computes per prompt."""
    encoded = [tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
    shared = shared_prefix_length(encoded) if reuse_prefix else 0
    prefix = tuple(encoded[0][:shared]) if shared >= MIN_SHARED_PREFIX else ()
    return prefix, [list(e[len(prefix) :]) for e in encoded]


class Sampler:
    """Samples continuations of text prompts from one loaded LM, batched."""

    def __init__(
        self, lm: LoadedLM, settings: SamplingSettings, *, batch_size: int, reuse_prefix: bool = True
    ) -> None:
        self.lm = lm
        self.settings = settings
        self.batch_size = batch_size
        self.reuse_prefix = reuse_prefix
        self._prefix: tuple[tuple[int, ...], Any] | None = None  # (prefix tokens, its KV cache), last one used
        self._static: tuple[tuple[int, int], Any] | None = None  # ((rows, capacity), a reusable StaticCache)
        self._static_fits = True  # False once StaticCache has failed for this model: don't retry every batch

    def _generation_config(self) -> Any:
        """Every distribution-changing field pinned (NEUTRAL_GENERATION); the stop tokens are the model's end of
        sequence (its generation config's, which for chat models is the end of turn) and the tokenizer's."""
        from transformers import GenerationConfig

        tok = self.lm.tokenizer
        stops = end_token_ids(self.lm)
        config = GenerationConfig(
            max_new_tokens=self.settings.max_new_tokens,
            pad_token_id=tok.pad_token_id,
            eos_token_id=stops or None,
        )
        for key, value in NEUTRAL_GENERATION.items():
            setattr(config, key, value)
        return config

    def effective_settings(self) -> dict[str, Any]:
        """What generate() really runs with: the recorded settings plus every pinned field as transformers resolves
        it against the model's own generation config (so a leak would show here, not only in the outputs)."""
        config = self._generation_config()
        with own_generation_config(self.lm.model, config):
            resolved = _resolve(self.lm.model, config)
        generate = {key: _plain(getattr(resolved, key, None)) for key in RECORDED_FIELDS}
        return {**self.settings.to_dict(), "generate": {**generate, "eos_token_id": _plain(resolved.eos_token_id)}}

    def _prefix_cache(self, prefix: tuple[int, ...]) -> Any:
        """The KV cache of `prefix` (batch 1), computed once and kept while the prefix stays the same."""
        import torch

        if self._prefix is None or self._prefix[0] != prefix:
            with torch.inference_mode():
                ids = torch.tensor([prefix], device=self.lm.device)
                output = self.lm.model(input_ids=ids, use_cache=True, logits_to_keep=1)
                cache = output.get("cache")  # transformers >= 5.24; past_key_values before
                if cache is None:
                    cache = output.past_key_values
            self._prefix = (prefix, cache)
        return self._prefix[1]

    def _primed_cache(self, prefix: tuple[int, ...], batch: int, input_length: int) -> Any:
        """A cache for `batch` rows that already holds the shared prefix.

        A preallocated StaticCache, written in place: transformers' DynamicCache concatenates (copies) every
        layer's whole cache at every step, which with a ~700-token DPG prefix cost 3x the model's own compute.
        Models whose cache layout StaticCache does not fit get a copy of the dynamic cache instead.
        """
        import copy

        from transformers import StaticCache

        shared = self._prefix_cache(prefix)
        # Capacity rounded up so that batches and rounds of similar width reuse one cache: allocating (and
        # page-faulting) a fresh ~1.7 GB cache per batch cost as much again as the decoding itself.
        capacity = -(-(input_length + self.settings.max_new_tokens) // 64) * 64
        try:
            if not self._static_fits:
                raise NotImplementedError("StaticCache failed for this model before")
            if self._static is not None and self._static[0] == (batch, capacity):
                cache = self._static[1]
                cache.reset()
            else:
                self._static = None  # free the old one before allocating
                cache = StaticCache(config=self.lm.model.config, max_cache_len=capacity)
                self._static = ((batch, capacity), cache)
            for index, layer in enumerate(shared.layers):
                keys, values = layer.keys, layer.values
                cache.update(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1), index)
            return cache
        except (TypeError, ValueError, AttributeError, NotImplementedError, IndexError) as exc:
            if self._static_fits:
                log.info("static cache not usable for %s (%s); copying the dynamic cache", type(self.lm.model), exc)
            self._static_fits, self._static = False, None  # a half-built cache is never reused
            cache = copy.deepcopy(shared)
            cache.batch_repeat_interleave(batch)
            return cache

    def sample(self, prompts: Sequence[str], *, seed: int, add_special_tokens: bool = True) -> list[str]:
        """One continuation per prompt, in the order given, cut at the first newline if so configured."""
        import torch
        from transformers import StoppingCriteriaList

        if not prompts:
            return []
        from transformers import LogitsProcessorList

        tok = self.lm.tokenizer
        prefix, suffixes = encode_with_shared_prefix(
            tok, prompts, add_special_tokens=add_special_tokens, reuse_prefix=self.reuse_prefix
        )
        config = self._generation_config()
        draw = LogitsProcessorList([NucleusDraw(self.settings.top_p, self.settings.temperature)])
        pad = tok.pad_token_id
        out: list[str] = [""] * len(prompts)
        for batch_no, batch in enumerate(length_buckets([len(s) for s in suffixes], self.batch_size)):
            # Row layout: [shared prefix][left padding][own suffix]; padding is masked out of attention.
            width = max(len(suffixes[i]) for i in batch)
            rows = [list(prefix) + [pad] * (width - len(suffixes[i])) + suffixes[i] for i in batch]
            masks = [[1] * len(prefix) + [0] * (width - len(suffixes[i])) + [1] * len(suffixes[i]) for i in batch]
            input_length = len(prefix) + width
            past = self._primed_cache(prefix, len(batch), input_length) if prefix else None
            stopping = StoppingCriteriaList()
            if self.settings.stop_at_newline:
                stopping.append(_StopAtNewline(self.lm.newline_mask(), input_length))
            torch.manual_seed(derive_seed(seed, batch_no))
            with torch.inference_mode(), own_generation_config(self.lm.model, config):
                generated = self.lm.model.generate(
                    input_ids=torch.tensor(rows, device=self.lm.device),
                    attention_mask=torch.tensor(masks, device=self.lm.device),
                    **{_cache_kwarg(): past},
                    generation_config=config,
                    logits_processor=draw,
                    stopping_criteria=stopping,
                )
            texts = tok.batch_decode(generated[:, input_length:].cpu(), skip_special_tokens=True)
            for i, text in zip(batch, texts, strict=True):
                out[i] = text.split("\n", 1)[0] if self.settings.stop_at_newline else text
        return out


def _cache_kwarg() -> str:
    """The name `generate` takes a KV cache under: `cache` in recent transformers, `past_key_values` before."""
    try:
        from transformers.generation.utils import ALL_CACHE_NAMES
    except ImportError:
        return "past_key_values"
    return "cache" if "cache" in ALL_CACHE_NAMES else "past_key_values"


@contextlib.contextmanager
def own_generation_config(model: Any, config: Any) -> Iterator[None]:
    """Let `config` stand in for the model's own generation config while generating, restored in `finally`.

    generate() fills every field its caller left unset from `model.generation_config`; with the stand-in in place
    that source is our own pinned config, on every transformers version (4.x treated a field equal to the global
    default as unset, so even an explicit 1.0 would have been replaced by the model's value).
    """
    saved = model.generation_config
    model.generation_config = config
    try:
        yield
    finally:
        model.generation_config = saved


def _resolve(model: Any, config: Any) -> Any:
    prepare = getattr(model, "_prepare_generation_config", None)
    if prepare is None:  # pragma: no cover - very old transformers
        return config
    resolved = prepare(config)
    return resolved[0] if isinstance(resolved, tuple) else resolved


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, bool | int | float | str) else repr(value)
