"""Weighted log-odds with an informative Dirichlet prior: planted phrases must come out on top, noise must not."""

from __future__ import annotations

import numpy as np
import pytest

from redlat.analysis.phrases import enriched_phrases, log_odds_with_prior, phrase_counts


def _corpus(seed: int = 0) -> tuple[list[str], list[bool]]:
    rng = np.random.default_rng(seed)
    topics = ["weather", "music", "travel", "cooking", "football", "gardening", "movies", "science"]
    texts, failing = [], []
    for i in range(200):
        topic = topics[i % len(topics)]
        fail = bool(rng.random() < 0.2)
        # Failing cases carry the word "invisible" 80% of the time; passing ones 5% of the time.
        planted = rng.random() < (0.8 if fail else 0.05)
        texts.append(f"What do you think about {topic}{' if you were invisible' if planted else ''}?")
        failing.append(fail)
    return texts, failing


def test_planted_phrase_ranks_first_and_is_significant() -> None:
    texts, failing = _corpus()
    phrases = enriched_phrases(texts, failing, top=10)
    assert phrases, "the planted phrase was not found"
    top = phrases[0]
    assert "invisible" in top.phrase
    assert top.z > 1.96
    assert 0.6 < top.share_of_failing <= 1.0  # close to the planted 80%
    # the topics were assigned independently of failure: none of them is significant
    assert not any(p.z > 1.96 and p.phrase in {"weather", "music", "travel", "cooking"} for p in phrases)
    assert [p.z for p in phrases] == sorted((p.z for p in phrases), reverse=True)


def test_stop_word_only_ngrams_are_left_out() -> None:
    vocab, matrix = phrase_counts(["what do you think", "what do you mean", "do you think so"], min_count=1)
    assert "do you" not in vocab and "what do" not in vocab
    assert "think" in vocab and "you think" in vocab
    assert matrix.shape == (3, len(vocab))
    assert matrix.max() == 1  # counted once per text


def test_prior_prefers_evidence_from_many_cases_over_one() -> None:
    # "alpha" in 9 of 10 failing and 1 passing; "beta" in a single failing case only.
    texts = ["alpha one"] * 9 + ["beta two"] + ["gamma three"] * 30 + ["alpha four"]
    failing = [True] * 10 + [False] * 31
    phrases = {p.phrase: p for p in enriched_phrases(texts, failing, min_count=1)}
    assert phrases["alpha"].z > 1.96
    assert "beta" not in phrases or phrases["alpha"].z > phrases["beta"].z


def test_no_failures_or_all_failures_give_nothing() -> None:
    texts = ["a question about cats", "a question about dogs"]
    assert enriched_phrases(texts, [False, False]) == []
    assert enriched_phrases(texts, [True, True]) == []
    with pytest.raises(ValueError):
        enriched_phrases(texts, [True])


def test_log_odds_is_antisymmetric() -> None:
    y_a, y_b = np.array([5.0, 1.0]), np.array([1.0, 5.0])
    prior = np.array([3.0, 3.0])
    delta, z = log_odds_with_prior(y_a, y_b, prior, 6.0, 6.0, 6.0)
    assert delta[0] == pytest.approx(-delta[1])
    assert z[0] > 0 > z[1]
