"""Diversity of a set of test cases: self-BLEU as Perez et al. (2022) define it, and distinct-n.

Self-BLEU of a case is its highest sentence BLEU against up to 1,000 other cases of the same set; a set's self-BLEU
is the mean over its cases (lower is more diverse). BLEU here is sacrebleu's sentence BLEU with its defaults
(13a tokenization, exponential smoothing, effective order), on its 0-100 scale. Calling sacrebleu once per pair
would take 10 million calls for 10,000 cases, so the same statistic is computed in batches: sacrebleu's tokenizer,
n-gram matches counted by sparse matrix products, and sacrebleu's scoring rules applied to whole arrays.
`sentence_bleu_reference` calls sacrebleu itself; the tests hold the batched scores equal to it.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from scipy import sparse

MAX_ORDER = 4
MAX_REFERENCES = 1000


def tokenize(text: str) -> list[str]:
    """sacrebleu's default (13a) tokenization, split into words."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()(text.rstrip()).split()


def sentence_bleu_reference(hypothesis: str, reference: str) -> float:
    """sacrebleu's sentence BLEU of one case against one other (slow; the ground truth for tests)."""
    import sacrebleu

    return float(sacrebleu.sentence_bleu(hypothesis, [reference]).score)


def _count_matrices(tokens: list[list[str]]) -> list[sparse.csr_matrix]:
    """Per n-gram order, a (cases x distinct n-grams) matrix of counts."""
    from scipy import sparse

    out = []
    for n in range(1, MAX_ORDER + 1):
        vocab: dict[tuple[str, ...], int] = {}
        rows, cols, vals = [], [], []
        for i, words in enumerate(tokens):
            counts = Counter(tuple(words[j : j + n]) for j in range(len(words) - n + 1))
            for gram, count in counts.items():
                rows.append(i)
                cols.append(vocab.setdefault(gram, len(vocab)))
                vals.append(count)
        out.append(sparse.csr_matrix((vals, (rows, cols)), shape=(len(tokens), max(len(vocab), 1)), dtype="float32"))
    return out


def _clipped_matches(hyps: sparse.csr_matrix, refs: sparse.csr_matrix) -> np.ndarray:
    """matches[i, j] = sum over n-grams of min(count in hyp i, count in ref j).

    Computed by levels, since min(a, b) = #{t >= 1: a >= t and b >= t}: one sparse product per level.
    """
    import numpy as np

    top = int(max(hyps.max(), refs.max(), 0))
    total = np.zeros((hyps.shape[0], refs.shape[0]), dtype=np.float32)
    for level in range(1, top + 1):
        h = (hyps >= level).astype(np.float32)
        r = (refs >= level).astype(np.float32)
        total += (h @ r.T).toarray()
    return total


def _bleu_arrays(correct: np.ndarray, hyp_len: np.ndarray, ref_len: np.ndarray) -> np.ndarray:
    """sacrebleu's sentence BLEU (exp smoothing, effective order) for every (hyp, ref) pair.

    correct: (orders, hyps, refs) clipped matches; hyp_len: (hyps,); ref_len: (refs,).
    """
    import numpy as np

    n_hyp, n_ref = correct.shape[1], correct.shape[2]
    log_sum = np.zeros((n_hyp, n_ref))
    smooth = np.ones((n_hyp, n_ref))
    eff_order = np.zeros(n_hyp)
    for n in range(1, MAX_ORDER + 1):
        total_n = np.maximum(hyp_len - n + 1, 0).astype(float)  # (hyps,)
        active = total_n > 0  # sacrebleu stops at the first order the hypothesis has no n-grams of
        eff_order += active
        c = correct[n - 1]
        zero = c == 0
        smooth = np.where(zero & active[:, None], smooth * 2, smooth)
        safe_total = np.where(active, total_n, 1.0)[:, None]
        precision = np.where(zero, 100.0 / (smooth * safe_total), 100.0 * c / safe_total)
        log_sum += np.where(active[:, None], np.log(precision), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_log = np.where(eff_order[:, None] > 0, log_sum / np.maximum(eff_order, 1)[:, None], -np.inf)
        hyp = hyp_len.astype(float)[:, None]
        ref = ref_len.astype(float)[None, :]
        bp = np.where(hyp >= ref, 1.0, np.where(hyp > 0, np.exp(1.0 - ref / np.maximum(hyp, 1)), 0.0))
    score = bp * np.exp(mean_log)
    no_match = correct.sum(axis=0) == 0  # sacrebleu returns 0 when nothing matches at any order
    return np.where(no_match, 0.0, score)


def self_bleu_per_case(
    cases: Sequence[str], *, max_references: int = MAX_REFERENCES, seed: int = 0, chunk: int = 512
) -> list[float]:
    """For each case, its max sentence BLEU against up to `max_references` other cases (one random draw of them)."""
    import numpy as np

    m = len(cases)
    if m < 2:
        return [float("nan")] * m
    tokens = [tokenize(case) for case in cases]
    counts = _count_matrices(tokens)
    lengths = np.array([len(t) for t in tokens])
    # One random set of max_references + 1 cases serves as everyone's references; each case skips itself.
    pool = list(range(m))
    if m > max_references + 1:
        pool = sorted(random.Random(seed).sample(pool, max_references + 1))
    pool_arr = np.array(pool)
    ref_counts = [matrix[pool_arr] for matrix in counts]
    out = np.empty(m)
    for start in range(0, m, chunk):
        rows = np.arange(start, min(start + chunk, m))
        correct = np.stack([_clipped_matches(c[rows], r) for c, r in zip(counts, ref_counts, strict=True)])
        scores = _bleu_arrays(correct, lengths[rows], lengths[pool_arr])
        scores[rows[:, None] == pool_arr[None, :]] = -np.inf  # never against itself
        if len(pool) > max_references:  # a case outside the pool keeps max_references + 1 others: drop one
            outside = ~np.isin(rows, pool_arr)
            scores[outside, -1] = -np.inf
        out[rows] = scores.max(axis=1)
    return out.tolist()


def max_bleu_against(hypotheses: Sequence[str], references: Sequence[str], *, chunk: int = 512) -> list[float]:
    """For each hypothesis, its max sentence BLEU (0-100) against the references; 0 when there are none."""
    import numpy as np

    if not references:
        return [0.0] * len(hypotheses)
    tokens = [tokenize(text) for text in [*hypotheses, *references]]
    counts = _count_matrices(tokens)
    lengths = np.array([len(t) for t in tokens])
    h = len(hypotheses)
    refs = np.arange(h, len(tokens))
    ref_counts = [matrix[refs] for matrix in counts]
    out = np.zeros(h)
    for start in range(0, h, chunk):
        rows = np.arange(start, min(start + chunk, h))
        correct = np.stack([_clipped_matches(c[rows], r) for c, r in zip(counts, ref_counts, strict=True)])
        out[rows] = _bleu_arrays(correct, lengths[rows], lengths[refs]).max(axis=1)
    return out.tolist()


def self_bleu(cases: Sequence[str], *, max_references: int = MAX_REFERENCES, seed: int = 0) -> float | None:
    """Mean self-BLEU of a set of test cases (0-100; lower is more diverse); None for fewer than 2 cases."""
    if len(cases) < 2:
        return None
    per_case = self_bleu_per_case(cases, max_references=max_references, seed=seed)
    return float(sum(per_case) / len(per_case))


def distinct_n(cases: Sequence[str], n: int) -> float | None:
    """Distinct n-grams over all n-grams in the set (words from the same tokenization); None if there are none."""
    grams: list[tuple[str, ...]] = []
    for case in cases:
        words = tokenize(case)
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else None
