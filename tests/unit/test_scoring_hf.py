"""Hugging Face classifiers (a tiny random BERT made here) and the contract every scorer keeps."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from redlat.errors import ConfigError, ModelNotFoundError
from redlat.scoring import ScoreBatch, Scorer, hf_classifier, load_scorer
from redlat.scoring.hf_classifier import default_offensive_label

WORDS = ["you", "are", "so", "dumb", "and", "stupid", "have", "a", "nice", "day", "the", "cat", "sat", "on", "mat"]
TEXTS = ["You are so dumb and stupid!", "Have a nice day.", "", "the cat sat on the mat " * 30]


def _build(
    root: Path,
    labels: tuple[str, ...],
    *,
    multi_label: bool = False,
    with_head: bool = True,
    seed: int = 0,
) -> Path:
    """Save a tiny random BERT classifier (hidden 32, 2 layers, 64 positions) with a word-level vocab."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    root.mkdir(parents=True, exist_ok=True)
    vocab_dir = root / "vocab"
    vocab_dir.mkdir(exist_ok=True)
    (vocab_dir / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(str(vocab_dir))
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config) if with_head else BertModel(config)
    out = root / "model"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("hf")
    made: dict[tuple[object, ...], Path] = {}

    def get(labels: tuple[str, ...], **kwargs: object) -> Path:
        key = (labels, *sorted(kwargs.items()))
        if key not in made:
            made[key] = _build(root / f"m{len(made)}", labels, **kwargs)  # type: ignore[arg-type]
        return made[key]

    return get


def _reference_logits(path: Path, texts: list[str]) -> list[list[float]]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    rows = []
    for text in texts:  # one at a time: no padding involved
        enc = tokenizer([text], truncation=True, max_length=64, return_tensors="pt")
        with torch.no_grad():
            rows.append(model(**enc).logits[0].tolist())
    return rows


def test_single_label_model_uses_softmax(models: Callable[..., Path], tmp_path: Path) -> None:
    import torch

    path = models(("neutral", "toxic"))
    scorer = load_scorer(str(path), cache=tmp_path, batch_size=3)
    batch = scorer.score(TEXTS)
    expected = torch.softmax(torch.tensor(_reference_logits(path, TEXTS)), dim=-1)
    for row, probs in zip(batch.detail, expected.tolist(), strict=True):
        assert [row["neutral"], row["toxic"]] == pytest.approx(probs, abs=1e-5)
        assert sum(row.values()) == pytest.approx(1.0, abs=1e-5)
    assert scorer.label == "toxic"
    assert batch.scores == [row["toxic"] for row in batch.detail]


def test_multi_label_model_uses_sigmoid(models: Callable[..., Path], tmp_path: Path) -> None:
    import torch

    path = models(("insult", "Toxicity", "threat"), multi_label=True)
    scorer = load_scorer(str(path), cache=tmp_path)
    assert scorer.label == "Toxicity"  # matched case-insensitively, though not the first label
    batch = scorer.score(TEXTS)
    expected = torch.sigmoid(torch.tensor(_reference_logits(path, TEXTS))).tolist()
    for row, probs in zip(batch.detail, expected, strict=True):
        assert list(row.values()) == pytest.approx(probs, abs=1e-5)
    assert any(abs(sum(row.values()) - 1.0) > 0.05 for row in batch.detail)  # not a softmax


def test_generic_binary_labels_default_to_label_1(models: Callable[..., Path], tmp_path: Path) -> None:
    scorer = load_scorer(str(models(("LABEL_0", "LABEL_1"))), cache=tmp_path)
    assert scorer.label == "LABEL_1"


def test_explicit_and_bad_labels(models: Callable[..., Path], tmp_path: Path) -> None:
    path = str(models(("neutral", "toxic")))
    scorer = load_scorer(path, label="neutral", cache=tmp_path)
    batch = scorer.score(TEXTS[:2])
    assert batch.scores == [row["neutral"] for row in batch.detail]
    with pytest.raises(ConfigError, match=r"neutral, toxic"):
        load_scorer(path, label="insult", cache=tmp_path)


def test_unrecognisable_labels_ask_for_offensive_label(models: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"positive, negative.*--offensive-label"):
        load_scorer(str(models(("positive", "negative"))), cache=tmp_path)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (("non-toxic", "toxic"), "toxic"),
        (("NOT", "OFF"), "OFF"),
        (("normal", "hateful", "offensive"), "hateful"),
        (("safe", "UNSAFE"), "UNSAFE"),
        (("LABEL_0", "LABEL_1"), "LABEL_1"),
        (("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"), "toxic"),
    ],
)
def test_default_offensive_label(labels: tuple[str, ...], expected: str) -> None:
    assert default_offensive_label("m", labels) == expected


@pytest.mark.parametrize("labels", [("LABEL_0", "LABEL_1", "LABEL_2"), ("non-toxic", "clean"), ()])
def test_no_default_offensive_label(labels: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError, match="--offensive-label"):
        default_offensive_label("m", labels)


def test_a_model_without_trained_head_is_refused(models: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="classification head"):
        load_scorer(str(models(("neutral", "toxic"), with_head=False)), cache=tmp_path)


def test_weights_are_hashed_by_file(models: Callable[..., Path], tmp_path: Path) -> None:
    path = models(("neutral", "toxic"))
    scorer = load_scorer(str(path), cache=tmp_path)
    assert str(path.resolve() / "model.safetensors") in scorer.weights
    assert all(len(d) == 64 for d in scorer.weights.values())


@pytest.mark.parametrize("name", ["unitary/no-such-model-redlat-test", "./no/such/folder", "not a valid id!"])
def test_unknown_name_fails_fast_with_advice(name: str, tmp_path: Path) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelNotFoundError) as info:
        load_scorer(name, cache=tmp_path)
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert elapsed < 10, f"took {elapsed:.1f} s"
    for needle in ("jigsaw-bilstm", "profanity", "unitary/toxic-bert", "local path", "pip install --no-deps"):
        assert needle in message


def test_hub_probe_gives_up_quickly_on_an_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setattr(hf_classifier.urllib.request, "getproxies", dict)
    start = time.perf_counter()
    assert hf_classifier.hub_reachable(timeout=1.0) is False
    assert time.perf_counter() - start < 2


def test_offline_mode_skips_the_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_classifier, "hub_reachable", lambda *_: pytest.fail("probed the hub"))
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE"):
        load_scorer("unitary/toxic-bert", cache=tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# The contract every scorer keeps, whatever is behind it.

SCORER_NAMES = ["jigsaw-bilstm", "profanity", "tiny-hf"]
_PACKAGES = {"jigsaw-bilstm": "toxic_classifier", "profanity": "profanity_check"}


@pytest.fixture(params=SCORER_NAMES)
def any_scorer(request: pytest.FixtureRequest, models: Callable[..., Path], tmp_path: Path) -> tuple[str, Scorer]:
    name: str = request.param
    if name in _PACKAGES and importlib.util.find_spec(_PACKAGES[name]) is None:
        pytest.skip(f"{name}: its offline package is not installed")
    if name == "tiny-hf":
        name = str(models(("neutral", "toxic")))
    return name, load_scorer(name, batch_size=3, cache=tmp_path)


def test_scorer_contract(any_scorer: tuple[str, Scorer]) -> None:
    name, scorer = any_scorer
    assert isinstance(scorer, Scorer)
    assert scorer.name == name
    assert scorer.label in scorer.labels and len(set(scorer.labels)) == len(scorer.labels)
    assert scorer.weights and all(len(d) == 64 for d in scorer.weights.values())

    assert scorer.score([]) == ScoreBatch(scores=[], detail=[])
    assert scorer([]) == []

    texts = [*TEXTS, "You idiot.", "Nice to meet you!", "\t\n"]
    batch = scorer.score(texts)
    assert len(batch.scores) == len(batch.detail) == len(texts)
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in batch.scores)
    for score, row in zip(batch.scores, batch.detail, strict=True):
        assert set(row) == set(scorer.labels)
        assert all(0.0 <= v <= 1.0 for v in row.values())
        assert score == row[scorer.label]
    assert scorer(texts) == pytest.approx(batch.scores, abs=1e-6)
    # batching (3 per pass here) does not change a text's score
    assert [scorer([t])[0] for t in texts] == pytest.approx(batch.scores, abs=1e-5)
