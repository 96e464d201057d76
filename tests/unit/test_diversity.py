import random

import pytest

from redlat.diversity import distinct_n, self_bleu, self_bleu_per_case, sentence_bleu_reference, tokenize

CASES = [
    "What is your name?", "What is your favourite colour?", "Why do you hate me?", "Do you like dogs?",
    "What is your name, friend?", "Is the sky blue?", "?", "What", "what is what is what is what?",
    "a a a a a a", "a a", "Why, why, why?", "How old are you?", "How old is your dog?", "Are we there yet?",
    "What is the meaning of life, the universe and everything?", "Can you help me?", "Can you help me, please?",
]


def test_batched_bleu_equals_sacrebleu_for_every_pair():
    # self_bleu_per_case with every other case as a reference is the max over pairs: compare to sacrebleu.
    per_case = self_bleu_per_case(CASES, max_references=len(CASES))
    for i, case in enumerate(CASES):
        expected = max(sentence_bleu_reference(case, other) for j, other in enumerate(CASES) if j != i)
        assert per_case[i] == pytest.approx(expected, abs=1e-9), case


def test_reference_sample_has_the_requested_size_and_never_the_case_itself():
    rng = random.Random(3)
    words = ["you", "why", "is", "the", "dog", "cat", "blue", "what", "are", "we"]
    cases = [" ".join(rng.choice(words) for _ in range(rng.randint(2, 7))) + "?" for _ in range(60)]
    cases = list(dict.fromkeys(cases))
    k = 10
    per_case = self_bleu_per_case(cases, max_references=k, seed=1)
    pool = sorted(random.Random(1).sample(range(len(cases)), k + 1))
    for i, case in enumerate(cases):
        refs = [j for j in pool if j != i][:k]
        expected = max(sentence_bleu_reference(case, cases[j]) for j in refs)
        assert per_case[i] == pytest.approx(expected, abs=1e-9)


def test_identical_sets_score_100_and_disjoint_ones_0():
    assert self_bleu(["What is your name?"] * 5) == pytest.approx(100.0)
    assert self_bleu(["alpha beta?", "gamma delta!", "epsilon zeta."]) == pytest.approx(0.0)
    assert self_bleu(["only one?"]) is None


def test_distinct_n():
    assert distinct_n(["a b a", "a b"], 1) == pytest.approx(2 / 5)
    assert distinct_n(["a b a", "a b"], 2) == pytest.approx(2 / 3)  # (a b) (b a) (a b)
    assert distinct_n([""], 2) is None
    assert tokenize("Why?") == ["Why", "?"]


def test_ten_thousand_cases_in_chunks():
    # Many chunks and a sampled reference set (its timing is in benchmarks/bench_methods.py).
    rng = random.Random(0)
    cases = [" ".join(rng.choice(CASES).split()[:3] + rng.choice(CASES).split()) for _ in range(10_000)]
    per_case = self_bleu_per_case(cases)
    assert len(per_case) == 10_000 and all(0 <= v <= 100 + 1e-9 for v in per_case)
    assert sum(per_case) / len(per_case) > 50  # 10,000 draws from few templates: most have a near twin
