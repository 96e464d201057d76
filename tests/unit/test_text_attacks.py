"""Held-out text attacks: character noise, embedding substitutes, greedy word substitution, HotFlip, paraphrases."""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from redlat.adversarial import text_attacks as ta
from redlat.errors import ConfigError
from redlat.generation import Sampler, derive_seed

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
UNUSED = ["[unused0]", "[unused1]", "[unused2]"]
PIECES = ["##s", "##ing", "##ly"]
PUNCTUATION = [",", ".", "!"]
NEUTRAL = [
    "the", "a", "movie", "film", "was", "is", "very", "quite", "plot", "acting", "story", "day", "food", "service",
    "this", "that", "it", "and", "but", "so", "really", "good", "great", "fine", "nice", "okay", "boring", "long",
    "short", "funny", "music", "end", "scene", "actor", "show", "book", "place",
]
TOXIC = ["bad", "awful"]


def write_vocab(directory: Path, tokens: Sequence[str]) -> Path:
    (directory / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return directory


def load_tokenizer(directory: Path):
    from transformers import BertTokenizerFast

    # from_pretrained reads vocab.txt on transformers 4.x and 5.x alike (5.x ignores a vocab_file= argument)
    return BertTokenizerFast.from_pretrained(str(directory))


def toy_texts(rng: random.Random, n: int) -> tuple[list[str], list[int]]:
    """Random word strings; label 1 exactly when they hold a toxic word."""
    texts, labels = [], []
    for i in range(n):
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(3, 6))]
        label = i % 2
        if label:
            words.insert(rng.randrange(len(words) + 1), rng.choice(TOXIC))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def logits_of(model, tokenizer, texts: Sequence[str]) -> torch.Tensor:
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models run far faster on one thread than on two cores shared with other jobs (50x, measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory):
    """A 1-layer, 16-wide BERT classifier trained for a few dozen steps on 'toxic word present -> class 1'."""
    from transformers import BertConfig, BertForSequenceClassification

    directory = write_vocab(tmp_path_factory.mktemp("bert-vocab"), SPECIALS + UNUSED + PIECES + PUNCTUATION +
                            NEUTRAL + TOXIC)
    tokenizer = load_tokenizer(directory)
    assert tokenizer.tokenize("The films!") == ["the", "film", "##s", "!"]  # a real word-piece tokenizer
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, num_labels=2)
    model = BertForSequenceClassification(config)
    texts, labels = toy_texts(random.Random(0), 256)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(60):
        part = slice(32 * (step % 8), 32 * (step % 8 + 1))
        enc = tokenizer(texts[part], padding=True, return_tensors="pt")
        loss = model(**enc, labels=torch.tensor(labels[part])).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.zero_grad(set_to_none=True)
    model.eval()
    held, held_labels = toy_texts(random.Random(1), 64)
    accuracy = (logits_of(model, tokenizer, held).argmax(-1) == torch.tensor(held_labels)).float().mean()
    assert accuracy >= 0.9, f"the tiny classifier did not learn the toy rule (accuracy {accuracy:.2f})"
    return model, tokenizer


# -- perturb_chars ------------------------------------------------------------------------------------------------

SENTENCE = "The quick brown fox jumps over the lazy dog, then sits and eats seven tasty pies at noon."


def changed_positions(a: str, b: str) -> set[int]:
    assert len(a) == len(b)
    return {i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y}


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (x != y))
    return row[-1]


@pytest.mark.parametrize("kind", ["leet", "homoglyph"])
def test_leet_and_homoglyph_keep_length_and_change_the_rate_share(kind: str) -> None:
    eligible = changed_positions(SENTENCE, ta.perturb_chars(SENTENCE, kind, 1.0, random.Random(0)))
    assert len(eligible) >= 10  # at rate 1 every letter with a replacement is replaced
    for seed in range(5):
        out = ta.perturb_chars(SENTENCE, kind, 0.3, random.Random(seed))
        changed = changed_positions(SENTENCE, out)
        assert len(changed) == round(0.3 * len(eligible))
        assert changed <= eligible
        looks_right = (lambda ch: not ch.isascii()) if kind == "homoglyph" else str.isdigit
        assert all(looks_right(out[i]) for i in changed)


def test_typo_edits_about_the_rate_share_of_letters() -> None:
    letters = sum(ch.isalpha() for ch in SENTENCE)
    count = round(0.2 * letters)
    outs = [ta.perturb_chars(SENTENCE, "typo", 0.2, random.Random(seed)) for seed in range(5)]
    for out in outs:
        assert count // 2 <= edit_distance(SENTENCE, out) <= 2 * count
        assert abs(len(out) - len(SENTENCE)) <= count
        assert [ch for ch in out if not ch.isalpha()] == [ch for ch in SENTENCE if not ch.isalpha()]
    assert len(set(outs)) == len(outs)  # different seeds, different typos


@pytest.mark.parametrize("kind", ta.CHAR_KINDS)
def test_perturb_chars_is_deterministic_and_changes_at_least_one_letter(kind: str) -> None:
    first = ta.perturb_chars(SENTENCE, kind, 0.1, random.Random(7))
    assert first == ta.perturb_chars(SENTENCE, kind, 0.1, random.Random(7))
    assert first != SENTENCE
    assert ta.perturb_chars("so", kind, 0.01, random.Random(0)) != "so"  # a tiny rate still changes one letter
    assert ta.perturb_chars("123 !?", kind, 0.5, random.Random(0)) == "123 !?"  # nothing to change
    assert ta.perturb_chars(SENTENCE, kind, 0.0, random.Random(0)) == SENTENCE


def test_replacement_tables() -> None:
    import unicodedata

    assert set(ta.KEYBOARD["s"]) == set("weadzx") and set(ta.KEYBOARD["p"]) == set("ol")
    assert set(ta.KEYBOARD["m"]) == set("njk") and all(key not in near for key, near in ta.KEYBOARD.items())
    for letter, lookalikes in ta.HOMOGLYPHS.items():
        assert letter.isascii() and lookalikes
        for ch in lookalikes:
            name = unicodedata.name(ch)
            assert name.startswith(("CYRILLIC", "GREEK"))
            assert ("CAPITAL" in name) == letter.isupper()
    assert ta.perturb_chars("tease", "leet", 1.0, random.Random(0)) == "73453"


def test_unknown_kind_and_bad_rate_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="typo, leet, homoglyph"):
        ta.perturb_chars("text", "emoji", 0.1, random.Random(0))
    with pytest.raises(ConfigError, match="rate"):
        ta.perturb_chars("text", "typo", 1.5, random.Random(0))
    with pytest.raises(ConfigError, match="typo, leet, homoglyph"):
        ta.char_attack(["text"], [0], lambda t: torch.zeros(len(t), 2), kind="caps")


# -- char_attack --------------------------------------------------------------------------------------------------


class Recorder:
    """A black-box predict: class 1 exactly when the text holds `needle`; records every call."""

    def __init__(self, needle: str) -> None:
        self.needle = needle
        self.calls: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        return torch.tensor([[0.0, 1.0] if self.needle in t else [1.0, 0.0] for t in texts])


@pytest.mark.parametrize("kind", ta.CHAR_KINDS)
def test_char_attack_is_fooled_only_by_a_change_to_the_needle(kind: str) -> None:
    texts = ["bad zoo", "a bad bet", "xyz qqq", "bad"]
    labels = [1, 1, 0, 1]
    predict = Recorder("bad")
    result = ta.char_attack(texts, labels, predict, kind=kind, rate=0.2, tries=3, seed=5, batch_size=4)
    assert result.queries == 12
    assert [len(c) for c in predict.calls] == [4, 4, 4]  # all variants batched through predict
    for index, (text, label) in enumerate(zip(texts, labels, strict=True)):
        rng = random.Random(derive_seed(5, index))
        variants = [ta.perturb_chars(text, kind, 0.2, rng) for _ in range(3)]
        right = [("bad" in v) == bool(label) for v in variants]
        assert result.correct[index] == all(right)
        fooled = [v for v, r in zip(variants, right, strict=True) if not r]
        assert result.texts[index] == (fooled[0] if fooled else variants[-1])
    assert result.correct[2]  # no perturbation of "xyz qqq" spells "bad"
    if kind != "leet":  # "bad" alone: its only eligible letters belong to the needle
        assert not result.correct[3]
    assert result.accuracy == sum(result.correct) / 4
    again = ta.char_attack(texts, labels, Recorder("bad"), kind=kind, rate=0.2, tries=3, seed=5, batch_size=4)
    assert again == result
    assert ta.char_attack(texts, labels, Recorder("bad"), kind=kind, rate=0.2, tries=3, seed=6).texts != result.texts


def test_empty_attack_has_nan_accuracy() -> None:
    result = ta.char_attack([], [], Recorder("bad"), kind="typo")
    assert result.queries == 0 and result.texts == [] and math.isnan(result.accuracy)
    with pytest.raises(ConfigError, match="labels"):
        ta.char_attack(["a", "b"], [0], Recorder("bad"), kind="typo")


# -- embedding_neighbours -----------------------------------------------------------------------------------------


def test_embedding_neighbours_by_cosine_excluding_specials_pieces_and_the_word(tmp_path: Path) -> None:
    rows = {
        "[PAD]": (1, 0, 0), "[UNK]": (1, 0, 0), "[CLS]": (1, 0, 0), "[SEP]": (1, 0, 0), "[MASK]": (1, 0, 0),
        "[unused0]": (1, 0, 0), "##s": (1, 0, 0), "!": (1, 0, 0),  # all as near as can be; none may be returned
        "good": (1, 0, 0), "great": (5, 0.5, 0), "fine": (0.5, 0.5, 0), "okay": (3, 4, 0), "bad": (-1, 0, 0),
        "nice": (0, 1, 0.2),
    }
    tokenizer = load_tokenizer(write_vocab(tmp_path, list(rows)))
    embeddings = torch.tensor(list(rows.values()), dtype=torch.float32)
    neighbours = ta.embedding_neighbours(tokenizer, embeddings, k=2)
    assert neighbours("good") == ["great", "fine"]  # cosine, not dot product (which would rank "okay" second)
    assert neighbours("Good") == ["great", "fine"]  # the uncased tokenizer lowercases
    everything = ta.embedding_neighbours(tokenizer, embeddings, k=8)("good")
    assert everything == ["great", "fine", "okay", "nice", "bad"]
    assert neighbours("zebra") == []  # not in the vocabulary
    assert neighbours("goods") == []  # two tokens: good ##s
    assert neighbours("!") == []  # not a word
    first = neighbours("bad")
    first.append("mutated")
    assert neighbours("bad") == ["nice", "okay"]  # the cache hands out copies


# -- word_substitution_attack -------------------------------------------------------------------------------------

SUBSTITUTES = {"the": ["a"], "movie": ["film"], "bad": ["good", "fine"], "awful": ["bad"], "film": ["movie"]}


def substitutes(word: str) -> list[str]:
    return SUBSTITUTES.get(word.lower(), [])


def toy_scores(texts: Sequence[str]) -> torch.Tensor:
    """Class 1 score: 3 for a toxic word, 1 for 'movie', minus 2."""
    rows = []
    for text in texts:
        words = re.findall(r"[a-z]+", text.lower())
        score = 3.0 * any(w in TOXIC for w in words) + 1.0 * ("movie" in words) - 2.0
        rows.append([0.0, score])
    return torch.tensor(rows)


def test_word_substitution_flips_the_prediction_and_stops_early() -> None:
    calls: list[int] = []

    def predict(texts: Sequence[str]) -> torch.Tensor:
        calls.append(len(texts))
        return toy_scores(texts)

    texts = ["The movie was bad!", "the awful film"]
    result = ta.word_substitution_attack(texts, [1, 1], predict, neighbours=substitutes, max_words=3)
    # "bad" matters most; swapping it fools the model, so "The" and "movie" stay; punctuation and case stay put
    assert result.texts[0] == "The movie was good!"
    assert result.correct == [False, True]
    # no substitute lowers the true class's probability of text 2 ("film" -> "movie" raises it): left alone
    assert result.texts[1] == "the awful film"
    # 2 clean + text 1: 3 deletions + 2 substitutes for "bad" + text 2: 3 deletions + 1 substitute for each of 3 words
    assert result.queries == 2 + (3 + 2) + (3 + 3) == sum(calls)
    assert result.accuracy == 0.5


def test_word_substitution_leaves_wrong_texts_and_respects_max_words() -> None:
    wrong = ta.word_substitution_attack(["the bad movie"], [0], toy_scores, neighbours=substitutes)
    assert wrong.texts == ["the bad movie"] and wrong.correct == [False] and wrong.queries == 1
    untouched = ta.word_substitution_attack(["the bad movie"], [1], toy_scores, neighbours=substitutes, max_words=0)
    assert untouched.texts == ["the bad movie"] and untouched.correct == [True] and untouched.queries == 1
    # one word allowed: "bad" (the most important) is swapped for "good", case and punctuation kept, and fools ...
    assert ta.word_substitution_attack(["(Bad) movie", "BAD movie"], [1, 1], toy_scores, neighbours=substitutes,
                                       max_words=1).texts == ["(Good) movie", "GOOD movie"]
    # ... but with only "movie" substitutable, the best swap lowers the true class's score without fooling
    only_movie = ta.word_substitution_attack(["bad movie"], [1], toy_scores, max_words=1,
                                             neighbours=lambda w: substitutes(w) if w == "movie" else [])
    assert only_movie.texts == ["bad film"] and only_movie.correct == [True]


# -- hotflip_attack -----------------------------------------------------------------------------------------------


def test_hotflip_raises_the_loss_and_fools_the_tiny_bert(tiny_bert) -> None:
    model, tokenizer = tiny_bert
    texts, labels = toy_texts(random.Random(2), 24)
    # words split into pieces: "badly" = bad ##ly, "movies" = movie ##s, "showing" = show ##ing
    texts += ["the badly acting movies", "showing the movies", "awful showing", "really funny scenes"]
    labels += [1, 0, 1, 0]
    clean = logits_of(model, tokenizer, texts)
    keep = [i for i in range(len(texts)) if int(clean[i].argmax()) == labels[i]]
    texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    assert len(texts) >= 20
    result = ta.hotflip_attack(model, tokenizer, texts, labels, flips=2, candidates=20, max_length=32)
    assert len(result.texts) == len(texts) and result.queries >= 2 * len(texts)
    assert result.accuracy < 0.5  # the model was right on all of them
    y = torch.tensor(labels)
    clean_loss = torch.nn.functional.cross_entropy(logits_of(model, tokenizer, texts), y, reduction="none")
    attacked = logits_of(model, tokenizer, result.texts)
    attacked_loss = torch.nn.functional.cross_entropy(attacked, y, reduction="none")
    assert (attacked_loss >= clean_loss - 1e-4).all() and attacked_loss.mean() > clean_loss.mean()
    assert (attacked.argmax(-1) == y).tolist() == result.correct  # the decoded texts are what was scored
    pieces = set(tokenizer.convert_tokens_to_ids(PIECES))
    forbidden = set(tokenizer.all_special_ids) | set(tokenizer.convert_tokens_to_ids(UNUSED)) | pieces
    for text, original in zip(result.texts, texts, strict=True):
        before = tokenizer(original, add_special_tokens=False)["input_ids"]
        after = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(after) == len(before)  # tokens swapped in place: none inserted, none merged
        swapped = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        assert len(swapped) <= 2 and not forbidden & {after[i] for i in swapped}
        assert all(i + 1 == len(before) or before[i + 1] not in pieces for i in swapped)  # split words stay whole
        assert "[" not in text


def test_hotflip_never_puts_in_special_unused_or_piece_tokens_even_when_they_would_win(tiny_bert) -> None:
    import copy

    model, tokenizer = copy.deepcopy(tiny_bert[0]), tiny_bert[1]
    table = model.get_input_embeddings().weight
    tempting = tokenizer.convert_tokens_to_ids(["[UNK]", "[MASK]", *UNUSED, *PIECES])
    with torch.no_grad():  # every forbidden token now looks like an exaggerated "awful"
        table[tempting] = 2 * table[tokenizer.convert_tokens_to_ids("awful")]
    texts = ["the movie was good", "a nice day", "food and service", "music so fine"]
    assert logits_of(model, tokenizer, texts).argmax(-1).tolist() == [0, 0, 0, 0]
    assert logits_of(model, tokenizer, ["the movie [unused1] good"]).argmax(-1).tolist() == [1]  # it would win
    result = ta.hotflip_attack(model, tokenizer, texts, [0, 0, 0, 0], flips=1, candidates=30)
    assert result.accuracy < 1.0  # "awful" or "bad" itself is still allowed, and wins
    for text in result.texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert not set(tempting) & set(ids) and "[" not in text


def test_hotflip_keeps_a_text_when_no_flip_raises_the_loss(tiny_bert) -> None:
    import copy

    model, tokenizer = copy.deepcopy(tiny_bert[0]), tiny_bert[1]
    with torch.no_grad():  # the classifier now ignores its input: class 0, whatever the text
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([1.0, 0.0]))
    texts = ["the bad movie", "a nice day"]
    result = ta.hotflip_attack(model, tokenizer, texts, [0, 0], flips=3, candidates=5)
    assert result.texts == texts and result.correct == [True, True]
    assert result.queries == 2 + 2 * 5  # one gradient pass and five candidates each, then nothing to gain


def test_hotflip_restores_mode_and_requires_grad_even_on_error(tiny_bert) -> None:
    model, tokenizer = tiny_bert
    model.train()
    for p in model.parameters():
        p.requires_grad_(p is not model.classifier.weight)
    flags = [p.requires_grad for p in model.parameters()]
    assert any(flags) and not all(flags)
    try:
        result = ta.hotflip_attack(model, tokenizer, ["the bad movie"], [1], flips=1, candidates=3)
        assert model.training and [p.requires_grad for p in model.parameters()] == flags
        assert len(result.texts) == 1 and all(p.grad is None for p in model.parameters() if p.requires_grad)
        with pytest.raises((IndexError, RuntimeError)):
            ta.hotflip_attack(model, tokenizer, ["the bad movie"], [7])  # no class 7: fails inside the attack
        assert model.training and [p.requires_grad for p in model.parameters()] == flags
    finally:
        model.classifier.weight.requires_grad_(True)
        model.eval()


def test_hotflip_with_no_flips_is_clean_accuracy(tiny_bert) -> None:
    model, tokenizer = tiny_bert
    texts, labels = toy_texts(random.Random(3), 8)
    result = ta.hotflip_attack(model, tokenizer, texts, labels, flips=0)
    clean = (logits_of(model, tokenizer, texts).argmax(-1) == torch.tensor(labels)).tolist()
    assert result.correct == clean and result.queries == len(texts)
    assert result.texts == texts  # decoding the untouched ids gives the (lower-case) texts back


# -- paraphrases --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_chat_lm(tiny_chat_path: Path):
    from redlat.models.causal_lm import load_causal_lm

    return load_causal_lm(str(tiny_chat_path), device="cpu")


def test_paraphrases_are_deterministic_one_per_text(tiny_chat_lm) -> None:
    texts = ["the movie was bad", "what a lovely day", "I hate waiting"]
    first = ta.paraphrases(texts, tiny_chat_lm, seed=3, max_new_tokens=6, batch_size=2)
    assert len(first) == 3 and all(isinstance(r, str) and r.strip() for r in first)
    assert ta.paraphrases(texts, tiny_chat_lm, seed=3, max_new_tokens=6, batch_size=2) == first
    assert ta.paraphrases([], tiny_chat_lm) == []


def test_paraphrases_prompt_and_cleanup(tiny_chat_lm, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict = {}

    def fake_sample(self, prompts, *, seed, add_special_tokens=True):
        seen.update(prompts=prompts, seed=seed, add_special_tokens=add_special_tokens, settings=self.settings)
        return ['  "A calm rewrite."  ', "  ", "\u201cok\u201d\n", "Rewrite this text: fourth", "same " * 10]

    monkeypatch.setattr(Sampler, "sample", fake_sample)
    texts = ["first text", "second text", "third text", "fourth text", "fifth text"]
    # empty, echoed requests and loops fall back to the original text
    assert ta.paraphrases(texts, tiny_chat_lm, seed=9, max_new_tokens=12) == [
        "A calm rewrite.", "second text", "ok", "fourth text", "fifth text"]
    assert seen["seed"] == 9 and seen["add_special_tokens"] is False
    assert seen["settings"].max_new_tokens == 12 and seen["settings"].stop_at_newline
    for prompt, text in zip(seen["prompts"], texts, strict=True):
        assert ta.PARAPHRASE_REQUEST in prompt and text in prompt
        assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
        assert prompt.index(ta.PARAPHRASE_REQUEST) < prompt.index("<|im_start|>user") < prompt.index(text)
    with pytest.raises(ConfigError, match="chat template"):
        ta.paraphrases(texts, SimpleNamespace(has_chat_template=False, name="plain"))  # type: ignore[arg-type]


def test_paraphrase_attack_scores_the_given_rewrites() -> None:
    predict = Recorder("bad")
    texts = ["bad film", "bad day", "nice day"]
    result = ta.paraphrase_attack(texts, [1, 1, 0], predict, ["a bad movie", "a poor day", "a fine day"])
    assert result.correct == [True, False, True] and result.accuracy == pytest.approx(2 / 3)
    assert result.texts == ["a bad movie", "a poor day", "a fine day"] and result.queries == 3
    with pytest.raises(ConfigError, match="rewrites"):
        ta.paraphrase_attack(texts, [1, 1, 0], predict, ["only one"])
