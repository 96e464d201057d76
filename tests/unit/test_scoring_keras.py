"""The restricted unpickler and the re-implemented Keras word tokenizer / pad_sequences."""

from __future__ import annotations

import collections
import os
import pickle
import sys
import types
from pathlib import Path

import pytest

from redlat.scoring.jigsaw_bilstm import read_keras_tokenizer
from redlat.scoring.keras_text import KERAS_DEFAULT_FILTERS, KerasWordTokenizer, pad_pre
from redlat.scoring.safe_pickle import KerasTokenizerState, UnsafePickleError, restricted_load


class _RunsShell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


def test_restricted_unpickler_refuses_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_RunsShell(f"touch {marker}"))
    with pytest.raises(UnsafePickleError, match=r"system"):
        restricted_load(payload)
    assert not marker.exists()


def test_restricted_unpickler_refuses_other_callables() -> None:
    for payload in (pickle.dumps(eval), pickle.dumps(getattr), pickle.dumps(collections.namedtuple)):
        with pytest.raises(pickle.UnpicklingError):  # UnsafePickleError is also an UnpicklingError
            restricted_load(payload)


def test_restricted_unpickler_reads_plain_data() -> None:
    data = {"a": collections.OrderedDict(x=1), "b": collections.defaultdict(int, y=2), "c": [1.5, "s", (True,)]}
    assert restricted_load(pickle.dumps(data)) == data


def _fake_keras_tokenizer_pickle(monkeypatch: pytest.MonkeyPatch, **attrs: object) -> bytes:
    """Pickle an object whose class path is Keras' Tokenizer, without Keras."""
    path = "keras.src.legacy.preprocessing.text"
    parts = path.split(".")
    for depth in range(1, len(parts) + 1):  # pickle imports the module (and so its parents) to check the class
        monkeypatch.setitem(sys.modules, ".".join(parts[:depth]), types.ModuleType(".".join(parts[:depth])))
    module = sys.modules[path]

    class Tokenizer:
        pass

    Tokenizer.__module__ = path
    Tokenizer.__qualname__ = "Tokenizer"
    module.Tokenizer = Tokenizer  # type: ignore[attr-defined]
    obj = Tokenizer()
    obj.__dict__.update(attrs)
    return pickle.dumps(obj, protocol=4)


def test_keras_tokenizer_pickle_maps_to_inert_stand_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    word_index = {"the": 1, "cat": 2, "sat": 3, "rare": 4, "rarer": 5}
    payload = _fake_keras_tokenizer_pickle(
        monkeypatch,
        word_counts=collections.OrderedDict(the=9),
        word_docs=collections.defaultdict(int, the=3),
        word_index=word_index,
        num_words=4,
        filters=KERAS_DEFAULT_FILTERS,
        split=" ",
        lower=True,
        char_level=False,
        oov_token=None,
        analyzer=None,
    )
    state = restricted_load(payload)
    assert type(state) is KerasTokenizerState
    assert state.word_index == word_index

    path = tmp_path / "tokenizer.pickle"
    path.write_bytes(payload)
    record = read_keras_tokenizer(path)
    # ids >= num_words can never be emitted, so the stored vocabulary keeps only the usable ones
    assert record["word_index"] == {"the": 1, "cat": 2, "sat": 3}
    assert record["num_words"] == 4
    assert record["full_vocabulary_size"] == 5
    assert record["oov_token"] is None


def _tok(**kwargs: object) -> KerasWordTokenizer:
    index = {"hello": 1, "world": 2, "don't": 3, "a": 4, "b": 5, "c": 6}
    return KerasWordTokenizer(word_index=kwargs.pop("word_index", index), **kwargs)  # type: ignore[arg-type]


def test_words_follow_keras_filters_case_and_split() -> None:
    tok = _tok()
    assert tok.words("Hello, World!") == ["hello", "world"]
    assert tok.words("a-b_c") == ["a", "b", "c"]
    assert tok.words("Don't") == ["don't"]  # the apostrophe is not a filter character
    assert tok.words("  a \t b\nc  ") == ["a", "b", "c"]  # tab and newline are filters; empties dropped
    assert tok.words("a\rb") == ["a\rb"]  # "\r" is neither a filter nor the split string
    assert tok.words("a\u00a0b") == ["a\u00a0b"]  # nor is a non-breaking space
    assert _tok(lower=False).words("Hello") == ["Hello"]


def test_ids_drop_unknown_and_cut_words_without_oov() -> None:
    tok = _tok(num_words=5)
    assert tok.ids("hello unknown world a b c") == [1, 2, 4]  # b=5, c=6 are >= num_words; unknown dropped
    assert _tok(num_words=None).ids("b c") == [5, 6]
    assert _tok(num_words=0).ids("c") == [6]  # Keras treats num_words=0 as "no limit"
    assert _tok(lower=False).ids("Hello hello") == [1]


def test_ids_map_cut_and_unknown_words_to_oov() -> None:
    index = {"<oov>": 1, "a": 2, "b": 3, "c": 4}
    tok = KerasWordTokenizer(word_index=index, num_words=3, oov_token="<oov>")
    assert tok.ids("a b c zzz") == [2, 1, 1, 1]


def test_pad_pre_keeps_the_last_ids_and_pads_in_front() -> None:
    assert pad_pre([[1, 2, 3]], 5) == [[0, 0, 1, 2, 3]]
    assert pad_pre([[1, 2, 3, 4, 5, 6, 7]], 5) == [[3, 4, 5, 6, 7]]
    assert pad_pre([[], [9]], 3) == [[0, 0, 0], [0, 0, 9]]
    with pytest.raises(ValueError):
        pad_pre([[1]], 0)
