"""Generation engines: what samples the red LM's test cases and the target's replies.

- `transformers` (the default): redlat.generation.Sampler on the loaded PyTorch model.
- `ctranslate2`: the same model converted once to CTranslate2 (float32, or quantised: int8, ...), cached
  (engines/ctranslate2.py). `pip install 'redlat[ctranslate2]'`.

Every engine samples with the same semantics: nucleus p and temperature with top-k off, the newline stop (DPG) or the
end of turn (chat), and the same seed for the same batch of the same call (derive_seed(seed, batch)). Different
engines compute with different kernels (and a quantised model is another model), so the same seed draws other
tokens on another engine: the engine is part of a run's identity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redlat.config import EngineSettings
    from redlat.generation import SamplingSettings
    from redlat.models.causal_lm import LoadedLM

EngineName = Literal["transformers", "ctranslate2"]
ENGINES: tuple[str, ...] = ("transformers", "ctranslate2")


class TextSampler(Protocol):
    """What the loop asks of an engine: continuations of prompts, and the settings it really samples with."""

    lm: LoadedLM
    settings: SamplingSettings

    def sample(self, prompts: Sequence[str], *, seed: int, add_special_tokens: bool = True) -> list[str]: ...

    def effective_settings(self) -> dict[str, Any]: ...


def make_sampler(
    lm: LoadedLM, settings: SamplingSettings, *, batch_size: int, engine: EngineSettings | None = None
) -> TextSampler:
    """A sampler for `lm` on the configured engine (transformers when none is given)."""
    if engine is None or engine.name == "transformers":
        from redlat.generation import Sampler

        return Sampler(lm, settings, batch_size=batch_size)
    if engine.name == "ctranslate2":
        from redlat.engines.ctranslate2 import CTranslate2Sampler

        return CTranslate2Sampler(lm, settings, batch_size=batch_size, compute_type=engine.compute_type)
    raise ValueError(f"unknown engine {engine.name!r}; the engines are: {', '.join(ENGINES)}")
