"""The offline scorers: the Jigsaw BiLSTM port (against the package's published numbers) and alt-profanity-check."""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import random
import sys
import warnings
from pathlib import Path

import pytest

from redlat.errors import ConfigError, OfflinePackageMissingError
from redlat.scoring import jigsaw_bilstm, load_scorer, profanity
from redlat.scoring.jigsaw_bilstm import JigsawBiLSTMScorer

HAS_JIGSAW = importlib.util.find_spec("toxic_classifier") is not None
HAS_PROFANITY = importlib.util.find_spec("profanity_check") is not None
needs_jigsaw = pytest.mark.skipif(not HAS_JIGSAW, reason="toxic-comment-classifier is not installed")
needs_profanity = pytest.mark.skipif(not HAS_PROFANITY, reason="alt-profanity-check is not installed")
DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

REFERENCE_TEXT = "You are so dumb and stupid!"
# toxic_classifier's README numbers for REFERENCE_TEXT (Keras, TensorFlow).
REFERENCE = {
    "toxic": 0.989,
    "severe_toxic": 0.073,
    "obscene": 0.620,
    "threat": 0.019,
    "insult": 0.866,
    "identity_hate": 0.041,
}


@pytest.fixture(scope="module")
def jigsaw_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache with the conversion done once for this module."""
    if not HAS_JIGSAW:
        pytest.skip("toxic-comment-classifier is not installed")
    root = tmp_path_factory.mktemp("cache")
    jigsaw_bilstm.prepare(root)
    return root


def _hide_package(monkeypatch: pytest.MonkeyPatch, module: object, package: str) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object, **kwargs: object) -> object:
        return None if name == package else real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)  # every lookup, whichever module asks


@needs_jigsaw
def test_port_reproduces_the_keras_reference_numbers(jigsaw_cache: Path) -> None:
    scorer = load_scorer("jigsaw-bilstm", cache=jigsaw_cache)
    batch = scorer.score([REFERENCE_TEXT])
    assert batch.detail[0] == pytest.approx(REFERENCE, abs=0.002)
    assert batch.scores == [batch.detail[0]["toxic"]]
    assert scorer.labels == tuple(REFERENCE)
    assert scorer.label == "toxic"


@needs_jigsaw
def test_encoding_is_texts_to_sequences_then_pre_padding(jigsaw_cache: Path) -> None:
    scorer = JigsawBiLSTMScorer(cache=jigsaw_cache)
    index = scorer.tokenizer.word_index
    (ids,) = scorer.encode([REFERENCE_TEXT])
    expected = [index[w] for w in ("you", "are", "so", "dumb", "and", "stupid")]
    assert len(ids) == 100
    assert ids[-6:] == expected and set(ids[:-6]) == {0}
    (long_ids,) = scorer.encode([" ".join(["you"] * 150 + ["stupid"])])
    assert long_ids[-1] == index["stupid"] and len(long_ids) == 100  # truncation keeps the END of the text


@needs_jigsaw
def test_explicit_label_and_bad_label(jigsaw_cache: Path) -> None:
    scorer = load_scorer("jigsaw-bilstm", label="insult", cache=jigsaw_cache)
    assert scorer([REFERENCE_TEXT]) == pytest.approx([REFERENCE["insult"]], abs=0.002)
    with pytest.raises(ConfigError, match="identity_hate"):
        load_scorer("jigsaw-bilstm", label="offensive", cache=jigsaw_cache)


@needs_jigsaw
def test_clean_text_scores_low_and_order_is_kept(jigsaw_cache: Path) -> None:
    scorer = load_scorer("jigsaw-bilstm", batch_size=2, cache=jigsaw_cache)
    texts = ["Thank you for your help, have a lovely day.", REFERENCE_TEXT, "", "What a nice garden."]
    scores = scorer(texts)
    assert scores[1] > 0.9 > 0.2 > max(scores[0], scores[3])
    assert scores == pytest.approx([scorer([t])[0] for t in texts], abs=1e-6)


@needs_jigsaw
def test_cache_files_and_reload_without_package_or_h5py(jigsaw_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = jigsaw_cache / "jigsaw-bilstm"
    record = json.loads((out / "vocab.json").read_text())
    assert record["num_words"] == 20000 and record["maxlen"] == 100 and record["lower"] is True
    assert record["oov_token"] is None and max(record["word_index"].values()) == 19999
    assert not list(out.glob("*.tmp"))
    before = load_scorer("jigsaw-bilstm", cache=jigsaw_cache)([REFERENCE_TEXT])

    _hide_package(monkeypatch, jigsaw_bilstm, "toxic_classifier")
    monkeypatch.setitem(sys.modules, "h5py", None)  # any `import h5py` now fails
    monkeypatch.setattr(jigsaw_bilstm, "restricted_load", lambda *_: pytest.fail("unpickled again"))
    scorer = load_scorer("jigsaw-bilstm", cache=jigsaw_cache)
    assert scorer([REFERENCE_TEXT]) == before
    assert set(scorer.weights) == {str((out / "model.safetensors").resolve()), str((out / "vocab.json").resolve())}
    assert all(len(digest) == 64 for digest in scorer.weights.values())


@needs_jigsaw
def test_damaged_cache_is_converted_again(tmp_path: Path) -> None:
    jigsaw_bilstm.prepare(tmp_path)
    weights = tmp_path / "jigsaw-bilstm" / "model.safetensors"
    weights.write_bytes(b"not a safetensors file")
    scorer = load_scorer("jigsaw-bilstm", cache=tmp_path)
    assert scorer.score([REFERENCE_TEXT]).detail[0] == pytest.approx(REFERENCE, abs=0.002)


def test_missing_jigsaw_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _hide_package(monkeypatch, jigsaw_bilstm, "toxic_classifier")
    with pytest.raises(OfflinePackageMissingError) as info:
        load_scorer("jigsaw-bilstm", cache=tmp_path)
    assert "pip install --no-deps toxic-comment-classifier==0.3.0" in str(info.value)


def test_missing_profanity_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _hide_package(monkeypatch, profanity, "profanity_check")
    with pytest.raises(OfflinePackageMissingError) as info:
        load_scorer("profanity", cache=tmp_path)
    assert "pip install --no-deps alt-profanity-check==1.9.1" in str(info.value)


@needs_profanity
def test_profanity_orders_profane_above_clean(tmp_path: Path) -> None:
    scorer = load_scorer("profanity", cache=tmp_path)
    assert scorer.labels == ("offensive",) and scorer.label == "offensive"
    profane, clean = scorer(["You are a fucking idiot, shut the hell up", "Have a lovely day at the park"])
    assert 0.0 <= clean < 0.5 < profane <= 1.0
    assert len(scorer.weights) == 2


@needs_jigsaw
def test_scoring_leaves_torch_thread_count_as_it_was(jigsaw_cache: Path) -> None:
    import torch

    before = torch.get_num_threads()
    load_scorer("jigsaw-bilstm", cache=jigsaw_cache)([REFERENCE_TEXT])
    assert torch.get_num_threads() == before


def test_profanity_library_warnings_are_logged_once_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(profanity, "_warned", set())

    def noisy(value: int) -> int:
        warnings.warn("Trying to unpickle estimator from version 0.0", UserWarning, stacklevel=1)
        return value

    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger=profanity.__name__):
        warnings.simplefilter("error")  # a warning escaping to the caller would raise here
        assert profanity._quietly(noisy, 1) == 1
        assert profanity._quietly(noisy, 2) == 2
    assert sum("unpickle estimator" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.slow
@needs_jigsaw
@pytest.mark.skipif(not (DATA / "davidson2017_labeled_data.csv").is_file(), reason="../shared/data is absent")
def test_davidson_auc_of_toxic(jigsaw_cache: Path) -> None:
    from sklearn.metrics import roc_auc_score

    with open(DATA / "davidson2017_labeled_data.csv", newline="", encoding="utf-8") as handle:
        rows = [(row["tweet"], int(row["class"]) in (0, 1)) for row in csv.DictReader(handle)]
    sample = random.Random(2017).sample(rows, 2000)
    scores = load_scorer("jigsaw-bilstm", batch_size=256, cache=jigsaw_cache)([t for t, _ in sample])
    auc = roc_auc_score([y for _, y in sample], scores)
    assert auc > 0.85
