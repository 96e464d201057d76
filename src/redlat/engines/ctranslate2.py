"""The CTranslate2 engine: a causal LM converted once to CTranslate2 (cached), sampled with redlat's semantics.

Conversion uses CTranslate2's own Transformers converter on the model's local directory, into
CACHE/ctranslate2/<name>-<hash of its weights>-<quantization>/, installed atomically; later runs load it directly.
`compute_type` is CTranslate2's: float32 keeps the weights as they are; int8 (or int8_float32, ...) quantises the
linear layers, which makes a slightly different model.

Sampling: nucleus p and temperature over the full vocabulary (sampling_topk=0), stopping at the model's end tokens
and, for DPG targets, at any token whose text holds a newline; prompts that share a long prefix (the DPG prompt, a
chat template's system turn) pass it as CTranslate2's static prompt (computed once per batch, not once per row).

Seeds: each batch is seeded with derive_seed(seed, batch), as in the transformers engine. CTranslate2 has no
per-request seed for generators: its sampler draws from a random generator that each of its worker threads seeds
once, from the global seed, when it first samples, so `set_random_seed` before a call on a warm Generator changes
nothing (measured: two calls after the same seed differ). A Generator is therefore built afresh for every batch,
after setting the seed, on a single worker thread (inter_threads=1): the same seed then gives the same samples
(tested). Building one reads the converted model again: about 0.4 s for SmolLM2-135M in float32 and 0.1 s in int8
on 2 CPU cores, against several seconds for a batch; the benchmark's rates include it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redlat.errors import ConfigError
from redlat.generation import derive_seed, encode_with_shared_prefix, end_token_ids, length_buckets

if TYPE_CHECKING:
    from redlat.generation import SamplingSettings
    from redlat.models.causal_lm import LoadedLM

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'redlat[ctranslate2]' (or pip install ctranslate2)"
COMPUTE_TYPES = ("float32", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "float16", "bfloat16")
DONE_MARKER = "redlat-conversion.json"


def import_ctranslate2() -> Any:
    try:
        import ctranslate2
    except ImportError as exc:
        raise ConfigError(f"--engine ctranslate2 needs CTranslate2, which is not installed: {INSTALL_HINT}") from exc
    return ctranslate2


def converted_dir(lm: LoadedLM, quantization: str, cache: Path | None = None) -> Path:
    """CTranslate2's copy of `lm`, converted on first use (atomically) and reused after."""
    from redlat.atomic import install_dir_atomically
    from redlat.paths import cache_dir

    ct2 = import_ctranslate2()
    # A local directory, or a hub id (CTranslate2's converter loads it through transformers, from the hub's cache)
    source = lm.source
    digest = hashlib.sha256(json.dumps([source if not Path(source).is_dir() else "",
                                        sorted(lm.weights.items())]).encode()).hexdigest()[:16]
    safe_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(lm.name).name)[:48]
    target = cache_dir(cache) / "ctranslate2" / f"{safe_name}-{digest}-{quantization}"

    def complete(path: Path) -> bool:
        return (path / DONE_MARKER).exists() and (path / "model.bin").exists()

    if not complete(target):
        log.info("converting %s to CTranslate2 (%s) into %s", lm.source, quantization, target)

        def build(tmp: Path) -> None:
            converter = ct2.converters.TransformersConverter(str(source))
            try:
                converter.convert(str(tmp), quantization=quantization, force=True)
            except (OSError, ValueError, NotImplementedError) as exc:
                raise ConfigError(f"CTranslate2 cannot convert {lm.name!r} ({source}): {exc}") from exc
            (tmp / DONE_MARKER).write_text(json.dumps({
                "source": lm.source, "weights": lm.weights, "quantization": quantization,
                "ctranslate2": ct2.__version__,
            }, indent=1) + "\n")

        install_dir_atomically(target, build, is_complete=complete)
    return target


class CTranslate2Sampler:
    """Samples continuations of text prompts with CTranslate2, batched, with the transformers engine's semantics."""

    def __init__(
        self, lm: LoadedLM, settings: SamplingSettings, *, batch_size: int, compute_type: str = "float32",
        reuse_prefix: bool = True,
    ) -> None:
        import torch

        ct2 = import_ctranslate2()
        if compute_type not in COMPUTE_TYPES:
            raise ConfigError(f"unknown CTranslate2 compute type {compute_type!r}; one of {', '.join(COMPUTE_TYPES)}")
        self.lm = lm
        self.settings = settings
        self.batch_size = batch_size
        self.compute_type = compute_type
        self.reuse_prefix = reuse_prefix
        self.directory = converted_dir(lm, compute_type)
        self._device = "cuda" if lm.device.type == "cuda" else "cpu"
        self._threads = torch.get_num_threads() if self._device == "cpu" else 0
        self._ct2 = ct2

    def _seeded_generator(self, seed: int) -> Any:
        """A fresh Generator whose sampler will draw from `seed` (see the module's note on seeds)."""
        self._ct2.set_random_seed(seed % 2**32)
        return self._ct2.Generator(
            str(self.directory), device=self._device, compute_type=self.compute_type, inter_threads=1,
            intra_threads=self._threads,
        )

    def _end_ids(self) -> list[int]:
        ids = end_token_ids(self.lm)
        if self.settings.stop_at_newline:
            ids += [i for i in self.lm.newline_mask().nonzero().flatten().tolist() if i not in ids]
        return ids

    def effective_settings(self) -> dict[str, Any]:
        return {
            **self.settings.to_dict(),
            "sampler": "ctranslate2",
            "engine": {"name": "ctranslate2", "version": self._ct2.__version__, "compute_type": self.compute_type,
                       "converted": str(self.directory), "sampling_topk": 0},
        }

    def sample(self, prompts: Sequence[str], *, seed: int, add_special_tokens: bool = True) -> list[str]:
        """One continuation per prompt, in the order given, cut at the first newline if so configured."""
        if not prompts:
            return []
        tok = self.lm.tokenizer
        prefix, own = encode_with_shared_prefix(
            tok, prompts, add_special_tokens=add_special_tokens, reuse_prefix=self.reuse_prefix
        )
        static = tok.convert_ids_to_tokens(list(prefix)) if prefix else None
        suffixes = [tok.convert_ids_to_tokens(ids) for ids in own]
        end_ids = self._end_ids()
        out: list[str] = [""] * len(prompts)
        for batch_no, batch in enumerate(length_buckets([len(s) for s in suffixes], self.batch_size)):
            generator = self._seeded_generator(derive_seed(seed, batch_no))
            results = generator.generate_batch(
                [suffixes[i] for i in batch],
                static_prompt=static,
                include_prompt_in_result=False,
                max_length=self.settings.max_new_tokens,
                sampling_topk=0,
                sampling_topp=self.settings.top_p,
                sampling_temperature=self.settings.temperature,
                end_token=end_ids,
                return_end_token=False,
            )
            del generator
            for i, result in zip(batch, results, strict=True):
                text = tok.decode(result.sequences_ids[0], skip_special_tokens=True)
                out[i] = text.split("\n", 1)[0] if self.settings.stop_at_newline else text
        return out
