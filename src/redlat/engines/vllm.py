"""The vLLM engine, for NVIDIA GPUs: the red LM and the target sampled by vLLM, with redlat's semantics.

UNTESTED ON A GPU. No GPU was available where this was written, and PyPI's vLLM is a CUDA build, so this module has
not run end to end; its tests (tests/unit/test_vllm_engine.py) skip unless vLLM imports and CUDA is available. What
is tested everywhere is what redlat decides: the request settings below, the errors when vLLM or a GPU is missing,
and that the engine is part of a run's identity.

Semantics, as the transformers engine's:
- nucleus p and temperature over the full vocabulary (top-k off: vLLM's -1, which every vLLM version accepts), with
  every other distribution-changing setting at its neutral value, and the model's generation_config.json defaults
  not applied (`generation_config="vllm"`): the run records what it samples with;
- a sample ends at the model's end tokens (generation.end_token_ids) and, for DPG targets, at the first newline (a
  stop string; the text is also cut at its first newline as the other engines do);
- prompts are tokenised by redlat (the same ids the other engines see) and passed as token ids;
- the shared prefix (the DPG prompt, a chat template's system turn) is served by vLLM's automatic prefix caching;
- seeds are per request: row i of a call seeded `seed` draws with derive_seed(seed, i), so a test case's sample does
  not depend on which other prompts shared its batch. Another engine draws other tokens for the same seed, so the
  engine is part of the run's identity (as for CTranslate2).

The vLLM engine (`vllm.LLM`) is built on the first `sample` call, not before: describing a run's settings costs no GPU
memory. It takes `gpu_memory_utilization` of the GPU (EngineSettings; 0.4 by default, so that the red LM's and the
target's engines fit on one GPU beside the PyTorch copies redlat keeps for scoring and training). With `--ray`, each
worker actor builds its own engines on the GPU it was given (`--ray-gpus-per-worker 1`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redlat.errors import ConfigError
from redlat.generation import derive_seed, end_token_ids

if TYPE_CHECKING:
    from redlat.generation import SamplingSettings
    from redlat.models.causal_lm import LoadedLM

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'redlat[vllm]' on a machine with an NVIDIA GPU and CUDA (vLLM's wheels are CUDA builds)"
TOP_K_OFF = -1  # vLLM: -1 (older versions' only "off") and 0 (newer versions' preferred) both disable top-k


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise ConfigError(f"--engine vllm needs vLLM, which is not installed: {INSTALL_HINT}") from exc
    return vllm


def require_gpu(device_type: str) -> None:
    """vLLM samples on NVIDIA GPUs only: a run on another device is refused before any model is loaded."""
    if device_type != "cuda":
        raise ConfigError(
            f"--engine vllm runs on NVIDIA GPUs, and this run's device is {device_type!r}: use --device cuda on a GPU "
            "machine, or --engine transformers (or ctranslate2) on CPUs"
        )


def request_settings(settings: SamplingSettings, *, seed: int, end_ids: Sequence[int]) -> dict[str, Any]:
    """The keyword arguments of one request's vllm.SamplingParams: redlat's decoding settings, everything else
    neutral."""
    return {
        "n": 1,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "top_k": TOP_K_OFF,
        "min_p": 0.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "repetition_penalty": 1.0,
        "max_tokens": settings.max_new_tokens,
        "stop": ["\n"] if settings.stop_at_newline else None,
        "stop_token_ids": list(end_ids),
        "ignore_eos": False,
        "skip_special_tokens": True,
        "seed": seed,
    }


def row_seeds(seed: int, n: int) -> list[int]:
    """One seed per request: row i of a call seeded `seed` (within vLLM's signed 64-bit range)."""
    return [derive_seed(seed, "row", i) for i in range(n)]


def finish_text(text: str, *, stop_at_newline: bool) -> str:
    """A sample's text as every engine returns it: cut at the first newline for DPG targets."""
    return text.split("\n", 1)[0] if stop_at_newline else text


class VLLMSampler:
    """Samples continuations of text prompts with vLLM on a GPU, with the transformers engine's semantics."""

    def __init__(
        self, lm: LoadedLM, settings: SamplingSettings, *, batch_size: int, gpu_memory_utilization: float = 0.4
    ) -> None:
        self._vllm = import_vllm()
        require_gpu(lm.device.type)
        self.lm = lm
        self.settings = settings
        self.batch_size = batch_size  # vLLM batches continuously; kept for the record only
        self.gpu_memory_utilization = gpu_memory_utilization
        self._llm: Any = None

    def _engine(self) -> Any:
        if self._llm is None:
            log.info("starting vLLM on %s (%s of the GPU's memory)", self.lm.source, self.gpu_memory_utilization)
            self._llm = self._vllm.LLM(
                model=self.lm.source,
                tokenizer=self.lm.source,
                dtype=str(self.lm.dtype).removeprefix("torch."),
                seed=0,
                enable_prefix_caching=True,
                gpu_memory_utilization=self.gpu_memory_utilization,
                generation_config="vllm",
            )
        return self._llm

    def effective_settings(self) -> dict[str, Any]:
        return {
            **self.settings.to_dict(),
            "sampler": "vllm",
            "engine": {
                "name": "vllm", "version": self._vllm.__version__, "top_k": TOP_K_OFF, "prefix_caching": True,
                "gpu_memory_utilization": self.gpu_memory_utilization, "seeds": "per request",
            },
        }

    def sample(self, prompts: Sequence[str], *, seed: int, add_special_tokens: bool = True) -> list[str]:
        """One continuation per prompt, in the order given, cut at the first newline if so configured."""
        if not prompts:
            return []
        tok = self.lm.tokenizer
        ends = end_token_ids(self.lm)
        requests = [{"prompt_token_ids": tok(p, add_special_tokens=add_special_tokens)["input_ids"]} for p in prompts]
        params = [
            self._vllm.SamplingParams(**request_settings(self.settings, seed=s, end_ids=ends))
            for s in row_seeds(seed, len(prompts))
        ]
        outputs = self._engine().generate(requests, params, use_tqdm=False)
        return [
            finish_text(tok.decode(out.outputs[0].token_ids, skip_special_tokens=True),
                        stop_at_newline=self.settings.stop_at_newline)
            for out in outputs
        ]
