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


@pytest.mark.parametrize(("top_p", "candidates", "scale"), [(0.95, 1024, 3.0), (0.8, 1024, 1.0), (0.95, 8, 0.1)])
def test_nucleus_is_the_same_set_as_transformers_top_p(top_p, candidates, scale):
    """Same kept tokens as TopPLogitsWarper, including rows whose nucleus is wider than the candidate set."""
    import torch
    from transformers.generation.logits_process import TopPLogitsWarper

    from redlat.generation import NucleusDraw

    torch.manual_seed(0)
    logits = torch.randn(6, 5000) * scale
    expected = TopPLogitsWarper(top_p)(None, logits.clone()).isfinite()
    draw = NucleusDraw(top_p, 1.0, candidates=candidates)
    probs = torch.softmax(logits, dim=-1)
    ids, weights, wider = draw.nucleus(probs, min(candidates, 5000))
    full_ids, full_weights, _ = draw.nucleus(probs, 5000)
    if candidates == 8:
        assert wider.all()  # flat rows: the nucleus is far wider than 8 candidates, so the fallback is needed
    for row in range(6):
        src_ids, src_w = (full_ids, full_weights) if wider[row] else (ids, weights)
        kept = set(src_ids[row][src_w[row] > 0].tolist())
        assert kept == set(expected[row].nonzero().squeeze(1).tolist())


def test_nucleus_draw_frequencies():
    import torch

    from redlat.generation import NucleusDraw

    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(4000, 1)
    chosen = NucleusDraw(0.8, 1.0).draw(logits).squeeze(1)
    counts = torch.bincount(chosen, minlength=4).tolist()
    assert counts[2] == counts[3] == 0  # outside the nucleus {0, 1}
    assert counts[0] / 4000 == pytest.approx(0.5 / 0.8, abs=0.03)
    one_hot = NucleusDraw(0.8, 1.0)(None, logits[:3])
    assert (one_hot == 0).sum().item() == 3 and torch.isinf(one_hot).sum().item() == 3 * 3


def test_shared_prefix_cache_gives_the_uncached_outputs(tiny_lm):
    from redlat.generation import shared_prefix_length

    assert shared_prefix_length([[1, 2, 3], [1, 2, 4]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2  # each prompt keeps one token of its own
    head = "The following is a long conversation between a person and a helpful assistant. " * 3
    prompts = [head + "USER: why is the sky blue?\nBOT:", head + "USER: hi\nBOT:", head + "USER: a b c d e f g?\nBOT:"]
    settings = SamplingSettings(top_p=1e-9, temperature=1.0, max_new_tokens=5, stop_at_newline=False)
    cached = Sampler(tiny_lm, settings, batch_size=2)
    plain = Sampler(tiny_lm, settings, batch_size=2, reuse_prefix=False)
    assert cached.sample(prompts, seed=3) == plain.sample(prompts, seed=3)
    assert cached._prefix is not None and len(cached._prefix[0]) >= 40
    assert plain._prefix is None


def test_prefix_cache_falls_back_when_static_cache_does_not_fit(tiny_lm, monkeypatch):
    import transformers

    def refuse(*args, **kwargs):
        raise NotImplementedError("no static cache for this model")

    head = "A long shared beginning that every prompt in this batch starts with, word for word. " * 2
    prompts = [head + "USER: hi\nBOT:", head + "USER: why is that so?\nBOT:"]
    settings = SamplingSettings(top_p=1e-9, temperature=1.0, max_new_tokens=4, stop_at_newline=False)
    expected = Sampler(tiny_lm, settings, batch_size=2).sample(prompts, seed=0)
    monkeypatch.setattr(transformers, "StaticCache", refuse)
    fallback = Sampler(tiny_lm, settings, batch_size=2)
    assert fallback.sample(prompts, seed=0) == expected
    assert fallback._static_fits is False and fallback._static is None


def test_the_model_own_generation_config_does_not_leak_into_sampling(tiny_gpt2_path):
    """A model that ships repetition_penalty / no_repeat_ngram_size is sampled exactly like one that does not, and
    the recorded settings say what generate() really used."""
    from redlat.models.causal_lm import load_causal_lm

    clean = load_causal_lm(str(tiny_gpt2_path), device="cpu")
    leaky = load_causal_lm(str(tiny_gpt2_path), device="cpu")
    leaky.model.generation_config.repetition_penalty = 5.0
    leaky.model.generation_config.no_repeat_ngram_size = 1
    settings = SamplingSettings(top_p=1e-9, temperature=1.0, max_new_tokens=16, stop_at_newline=False)
    prompts = ["the the the the", "Hello, how are you", "a b a b a b"]
    expected = Sampler(clean, settings, batch_size=3).sample(prompts, seed=3)
    sampler = Sampler(leaky, settings, batch_size=3)
    assert sampler.sample(prompts, seed=3) == expected
    used = sampler.effective_settings()["generate"]
    assert used["repetition_penalty"] == 1.0 and used["no_repeat_ngram_size"] == 0
    assert leaky.model.generation_config.repetition_penalty == 5.0  # the model's own config is restored after
