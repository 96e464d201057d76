"""Read the pickled Keras text tokenizer without running anything a pickle could smuggle in.

Loading a pickle calls whatever globals it names. `RestrictedUnpickler` resolves only an allow-list: a few plain
builtins and collections types, and the Keras `Tokenizer` class paths, which it maps to `KerasTokenizerState`,
an inert stand-in that only receives the pickled attribute dictionary. Every other global is refused, so no Keras
or TensorFlow is imported and no code from the file runs.
"""

from __future__ import annotations

import builtins
import collections
import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

from redlat.errors import RedlatError

# Where the Keras text tokenizer has lived across Keras / TensorFlow versions.
KERAS_TOKENIZER_PATHS = frozenset(
    {
        ("keras.src.legacy.preprocessing.text", "Tokenizer"),
        ("keras.legacy.preprocessing.text", "Tokenizer"),
        ("keras.preprocessing.text", "Tokenizer"),
        ("keras_preprocessing.text", "Tokenizer"),
        ("tensorflow.keras.preprocessing.text", "Tokenizer"),
    }
)

_SAFE_BUILTINS = frozenset({"int", "float", "str", "bool", "list", "dict", "tuple", "set", "frozenset"})
_SAFE_COLLECTIONS = frozenset({"OrderedDict", "defaultdict", "Counter"})


class UnsafePickleError(RedlatError, pickle.UnpicklingError):
    """A pickle referenced a global outside the allow-list (or was otherwise not plain data)."""


class KerasTokenizerState:
    """Inert stand-in for keras' Tokenizer: unpickling fills `__dict__` with the saved attributes, nothing else."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafePickleError(f"expected the tokenizer's attribute dict, got {type(state).__name__}")
        self.__dict__.update(state)


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose `find_class` answers only from an allow-list."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in KERAS_TOKENIZER_PATHS:
            return KerasTokenizerState
        if module == "builtins" and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        if module == "collections" and name in _SAFE_COLLECTIONS:
            return getattr(collections, name)
        raise UnsafePickleError(
            f"refusing to unpickle global {module}.{name}: only plain data and the Keras text Tokenizer "
            "are allowed (unpickling can run arbitrary code)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing a pickle with persistent ids")


def restricted_load(source: bytes | BinaryIO | Path) -> Any:
    """Unpickle bytes, a binary file object or a file path with `RestrictedUnpickler`."""
    if isinstance(source, Path):
        with open(source, "rb") as handle:
            return RestrictedUnpickler(handle).load()
    if isinstance(source, bytes | bytearray):
        return RestrictedUnpickler(io.BytesIO(source)).load()
    return RestrictedUnpickler(source).load()
