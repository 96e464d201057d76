"""The scorer base class, the registry and the package's import weight (no real models here)."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Sequence

import pytest

from redlat.errors import ConfigError, RedlatError
from redlat.scoring import OFFLINE_SCORERS, BaseScorer, ScoreBatch, Scorer, load_scorer


class LengthScorer(BaseScorer):
    """Scores a text by its length; records the batch sizes it was called with."""

    def __init__(self, *, label: str = "long", batch_size: int = 64, rows: Sequence[float] | None = None) -> None:
        super().__init__(
            name="length", labels=("long", "short"), label=label, weights={"w": "0" * 64}, batch_size=batch_size
        )
        self.calls: list[int] = []
        self.fixed = rows

    def _predict_batch(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        if self.fixed is not None:
            return [list(self.fixed) for _ in texts]
        return [[min(len(t) / 10, 1.0), 1.0 - min(len(t) / 10, 1.0)] for t in texts]


def test_empty_input_gives_empty_batch_without_predicting() -> None:
    scorer = LengthScorer()
    assert scorer.score([]) == ScoreBatch(scores=[], detail=[])
    assert scorer([]) == []
    assert scorer.calls == []


def test_batches_are_split_and_results_kept_in_order() -> None:
    scorer = LengthScorer(batch_size=2)
    texts = ["a", "abcdefghij", "", "abc", "abcde"]
    batch = scorer.score(texts)
    assert scorer.calls == [2, 2, 1]
    assert batch.scores == pytest.approx([0.1, 1.0, 0.0, 0.3, 0.5])
    assert [d["short"] for d in batch.detail] == pytest.approx([0.9, 0.0, 1.0, 0.7, 0.5])
    assert scorer(texts) == batch.scores


def test_label_selects_the_score_column() -> None:
    scorer = LengthScorer(label="short")
    assert scorer(["abc"]) == pytest.approx([0.7])


def test_unknown_label_lists_the_labels() -> None:
    with pytest.raises(ConfigError, match=r"long, short"):
        LengthScorer(label="toxic")


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
def test_bad_batch_size(bad: object) -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        LengthScorer(batch_size=bad)  # type: ignore[arg-type]


def test_a_bare_string_or_non_string_is_refused() -> None:
    scorer = LengthScorer()
    with pytest.raises(TypeError, match="single string"):
        scorer.score("hello")
    with pytest.raises(TypeError, match="text 1"):
        scorer.score(["ok", None])  # type: ignore[list-item]


def test_scores_are_clamped_and_non_finite_scores_refused() -> None:
    assert LengthScorer(rows=[1.0000001, -1e-9])(["x"]) == [1.0]
    with pytest.raises(RedlatError, match="non-finite"):
        LengthScorer(rows=[math.nan, 0.0])(["x"])
    with pytest.raises(RedlatError, match="expected 2"):
        LengthScorer(rows=[0.5])(["x"])


def test_base_scorer_satisfies_the_protocol() -> None:
    assert isinstance(LengthScorer(), Scorer)
    assert not isinstance(object(), Scorer)


def test_offline_catalogue_gives_pinned_install_commands() -> None:
    assert set(OFFLINE_SCORERS) == {"jigsaw-bilstm", "profanity"}
    assert OFFLINE_SCORERS["jigsaw-bilstm"][0] == "pip install --no-deps toxic-comment-classifier==0.3.0"
    assert OFFLINE_SCORERS["profanity"][0] == "pip install --no-deps alt-profanity-check==1.9.1"
    assert all(description for _, description in OFFLINE_SCORERS.values())


def test_load_scorer_checks_batch_size_before_loading_anything() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        load_scorer("jigsaw-bilstm", batch_size=0)


def test_importing_scoring_stays_light() -> None:
    code = (
        "import sys, redlat.scoring\n"
        "heavy = [m for m in ('torch', 'transformers', 'h5py', 'sklearn', 'safetensors') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
