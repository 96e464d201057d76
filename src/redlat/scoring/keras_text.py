"""Keras' legacy word tokenizer and `pad_sequences`, re-implemented so no Keras is needed at run time.

The rules follow `keras.src.legacy.preprocessing.text.Tokenizer.texts_to_sequences` (word level, no analyzer):

1. lower-case the text if `lower`;
2. replace every character of `filters` with `split`;
3. split on `split` (exactly that string, as `str.split(split)`: other whitespace such as "\\r" stays inside
   words) and drop empty pieces;
4. map each word through `word_index`; a word whose index is >= `num_words` (when num_words is set and non-zero),
   or that is not in the index, becomes the OOV token's index if there is an OOV token, else it is dropped.

`pad_pre` is `pad_sequences(seqs, maxlen)` with its defaults: keep the LAST `maxlen` ids (truncating="pre") and
put zeros in front (padding="pre").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

KERAS_DEFAULT_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'


@dataclass(frozen=True)
class KerasWordTokenizer:
    word_index: Mapping[str, int]
    num_words: int | None = None
    lower: bool = True
    filters: str = KERAS_DEFAULT_FILTERS
    split: str = " "
    oov_token: str | None = None
    _table: dict[int, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.split:
            raise ValueError("split must be a non-empty string")
        object.__setattr__(self, "_table", {ord(ch): self.split for ch in self.filters})

    def words(self, text: str) -> list[str]:
        """`text_to_word_sequence`: the words of one text, after lower-casing and filtering."""
        if self.lower:
            text = text.lower()
        return [piece for piece in text.translate(self._table).split(self.split) if piece]

    def ids(self, text: str) -> list[int]:
        """`texts_to_sequences` for one text."""
        oov_id = self.word_index.get(self.oov_token) if self.oov_token is not None else None
        out: list[int] = []
        for word in self.words(text):
            index = self.word_index.get(word)
            if index is None or (self.num_words and index >= self.num_words):
                if oov_id is not None:
                    out.append(oov_id)
                continue
            out.append(index)
        return out

    def texts_to_sequences(self, texts: Iterable[str]) -> list[list[int]]:
        return [self.ids(text) for text in texts]


def pad_pre(sequences: Sequence[Sequence[int]], maxlen: int, value: int = 0) -> list[list[int]]:
    """Keras `pad_sequences(sequences, maxlen)`: pre-truncate to the last `maxlen` ids, pre-pad with `value`."""
    if maxlen < 1:
        raise ValueError(f"maxlen must be >= 1, got {maxlen}")
    rows: list[list[int]] = []
    for seq in sequences:
        kept = list(seq[-maxlen:]) if seq else []
        rows.append([value] * (maxlen - len(kept)) + kept)
    return rows
