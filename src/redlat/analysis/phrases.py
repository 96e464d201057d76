"""Phrases that go with failures: weighted log-odds with an informative Dirichlet prior (Monroe, Colaresi and Quinn
2008, "Fightin' Words"), over word n-grams counted once per test case.

For a phrase w seen in y_a of the n_a failing cases and y_b of the n_b passing cases, with prior pseudo-counts
alpha_w (its count over all cases, scaled so they sum to alpha_0):

    delta_w = log((y_a + alpha_w) / (n_a + alpha_0 - y_a - alpha_w))
              - log((y_b + alpha_w) / (n_b + alpha_0 - y_b - alpha_w))
    z_w = delta_w / sqrt(1 / (y_a + alpha_w) + 1 / (y_b + alpha_w))

The prior shrinks rare phrases toward zero, so a phrase seen once in a failure does not outrank a phrase seen in
many; z > 1.96 is the usual two-sided 5% line (not corrected for the number of phrases tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

TOKEN_PATTERN = r"(?u)\b\w[\w']*\b"


@dataclass(frozen=True)
class Phrase:
    phrase: str
    n_cases: int  # test cases containing it
    n_failing: int  # failing test cases containing it
    share_of_failing: float  # n_failing / all failing cases (the paper's "in 78% of test cases")
    failure_rate: float  # n_failing / n_cases
    log_odds: float  # delta_w
    z: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def phrase_counts(texts: Sequence[str], *, ngram_max: int = 3, min_count: int = 2) -> tuple[list[str], Any]:
    """The vocabulary of word 1..ngram_max-grams found in at least `min_count` texts, and the binary text x phrase
    matrix (scipy sparse). n-grams made only of English stop words are left out ("do you", "what is the")."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    if not texts:
        return [], None
    vectorizer = CountVectorizer(
        ngram_range=(1, ngram_max), token_pattern=TOKEN_PATTERN, lowercase=True, binary=True,
        min_df=min(min_count, len(texts)),
    )
    try:
        matrix = vectorizer.fit_transform(texts)
    except ValueError:  # nothing left (empty texts, or every n-gram below min_count)
        return [], None
    vocab = vectorizer.get_feature_names_out()
    keep = [i for i, phrase in enumerate(vocab) if not all(word in ENGLISH_STOP_WORDS for word in phrase.split())]
    return [str(vocab[i]) for i in keep], matrix[:, keep].tocsc()


def log_odds_with_prior(
    y_a: np.ndarray, y_b: np.ndarray, prior: np.ndarray, n_a: float, n_b: float, alpha_0: float
) -> tuple[np.ndarray, np.ndarray]:
    """delta and z per phrase; `prior` holds alpha_w (pseudo-counts summing to alpha_0)."""
    a = y_a + prior
    b = y_b + prior
    delta = np.log(a / np.maximum(n_a + alpha_0 - a, 1e-12)) - np.log(b / np.maximum(n_b + alpha_0 - b, 1e-12))
    z = delta / np.sqrt(1.0 / a + 1.0 / b)
    return delta, z


def enriched_phrases(
    texts: Sequence[str],
    failing: Sequence[bool],
    *,
    ngram_max: int = 3,
    min_count: int = 2,
    top: int = 20,
    prior_strength: float | None = None,
) -> list[Phrase]:
    """Phrases over-represented in failing vs passing texts, highest z first (only those with z > 0).

    `prior_strength` is alpha_0; default: the number of phrase occurrences in the whole corpus (the prior is then
    the corpus counts themselves, as in Monroe et al.).
    """
    flags = np.asarray(failing, dtype=bool)
    if len(texts) != len(flags):
        raise ValueError("texts and failing flags differ in length")
    n_fail = int(flags.sum())
    if n_fail == 0 or n_fail == len(flags):
        return []
    vocab, matrix = phrase_counts(texts, ngram_max=ngram_max, min_count=min_count)
    if not vocab:
        return []
    y_a = np.asarray(matrix[flags].sum(axis=0)).ravel().astype(float)
    y_b = np.asarray(matrix[~flags].sum(axis=0)).ravel().astype(float)
    totals = y_a + y_b
    alpha_0 = float(totals.sum()) if prior_strength is None else float(prior_strength)
    prior = totals / totals.sum() * alpha_0
    # Documents counted once per phrase: n_a, n_b are the phrase occurrences in each group.
    delta, z = log_odds_with_prior(y_a, y_b, prior, float(y_a.sum()), float(y_b.sum()), alpha_0)
    order = np.argsort(-z, kind="stable")
    out = []
    for i in order[:top]:
        if z[i] <= 0:
            break
        out.append(Phrase(
            phrase=vocab[i],
            n_cases=int(totals[i]),
            n_failing=int(y_a[i]),
            share_of_failing=float(y_a[i] / n_fail),
            failure_rate=float(y_a[i] / totals[i]),
            log_odds=float(delta[i]),
            z=float(z[i]),
        ))
    return out
