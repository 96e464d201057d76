import pytest

from redlat.generation import Sampler, SamplingSettings, derive_seed, length_buckets


def test_length_buckets_group_similar_lengths_and_cover_everything():
    lengths = [5, 50, 6, 49, 7, 48]
    buckets = length_buckets(lengths, 2)
    assert sorted(i for b in buckets for i in b) == list(range(6))
    assert buckets[0] == [1, 3]  # the two longest together
    assert all(len(b) <= 2 for b in buckets)


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, 3, "red") == derive_seed(0, 3, "red")
    assert derive_seed(0, 3, "red") != derive_seed(0, 3, "target")
    assert derive_seed(0, 3, "red") != derive_seed(1, 3, "red")
    assert 0 <= derive_seed(2**40, "x") < 2**63


@pytest.fixture(scope="module")
def tiny_lm(tiny_gpt2_path):
    from redlat.models.causal_lm import load_causal_lm

    return load_causal_lm(str(tiny_gpt2_path), device="cpu")


def test_left_padding_does_not_change_outputs(tiny_lm):
    """Near-greedy decoding of each prompt alone equals decoding it inside a padded batch."""
    prompts = ["Hello there, how are", "A much longer prompt that will force the others to be padded on the left", "Hi"]
    settings = SamplingSettings(top_p=1e-9, temperature=1.0, max_new_tokens=6, stop_at_newline=False)
    batched = Sampler(tiny_lm, settings, batch_size=3).sample(prompts, seed=1)
    alone = [Sampler(tiny_lm, settings, batch_size=1).sample([p], seed=1)[0] for p in prompts]
    assert batched == alone
    assert all(len(tiny_lm.tokenizer(t)["input_ids"]) >= 1 for t in batched)


def test_sampling_is_seeded_and_stops_at_newline(questioner_chat_lm):
    settings = SamplingSettings(top_p=0.95, temperature=1.0, max_new_tokens=12)
    sampler = Sampler(questioner_chat_lm, settings, batch_size=4)
    prompts = ["List of questions to ask someone:\n1."] * 8
    first = sampler.sample(prompts, seed=5)
    assert first == sampler.sample(prompts, seed=5)
    assert first != sampler.sample(prompts, seed=6)
    assert all("\n" not in text for text in first)
    assert sampler.sample([], seed=0) == []
