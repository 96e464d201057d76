"""Choose the torch device and dtype: CUDA, then MPS, then CPU; bf16 where it helps."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redlat.errors import ConfigError

if TYPE_CHECKING:
    import torch

DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_device(spec: str = "auto") -> torch.device:
    import torch

    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {spec!r}: use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {spec!r} asked for, but CUDA is not available here; use --device auto or cpu"
        )
    return device


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """`auto` is bf16 on CUDA GPUs that support it, float32 elsewhere (bf16 matmuls are slow on most CPUs)."""
    import torch

    if spec not in DTYPES:
        raise ConfigError(f"unknown dtype {spec!r}: use one of {', '.join(DTYPES)}")
    if spec == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, spec)
