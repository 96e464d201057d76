"""Generation engines: what samples the red LM's test cases and the target's replies.

- `transformers` (the default): redlat.generation.Sampler on the loaded PyTorch model.
- `ctranslate2`: the same model converted once to CTranslate2 (float32, or quantised: int8, ...), cached
  (engines/ctranslate2.py). `pip install 'redlat[ctranslate2]'`.
- `vllm`: vLLM on NVIDIA GPUs, with prefix caching and per-request seeds (engines/vllm.py; untested on a GPU so far).
  `pip install 'redlat[vllm]'`.

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

EngineName = Literal["transformers", "ctranslate2", "vllm"]
ENGINES: tuple[str, ...] = ("transformers", "ctranslate2", "vllm")


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
    if engine.name == "vllm":
        from redlat.engines.vllm import VLLMSampler

        return VLLMSampler(lm, settings, batch_size=batch_size, gpu_memory_utilization=engine.gpu_memory_utilization)
    raise ValueError(f"unknown engine {engine.name!r}; the engines are: {', '.join(ENGINES)}")


def check_engine(engine: EngineSettings, device: str) -> None:
    """Fail before any model is loaded when the engine's library is missing or cannot run on `device`."""
    if engine.name == "ctranslate2":
        from redlat.engines.ctranslate2 import import_ctranslate2

        import_ctranslate2()
    elif engine.name == "vllm":
        from redlat.device import resolve_device
        from redlat.engines.vllm import import_vllm, require_gpu

        import_vllm()
        require_gpu(resolve_device(device).type)
