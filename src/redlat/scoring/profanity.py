"""`profanity`: alt-profanity-check's binary offensive-language model (TF-IDF + calibrated linear SVM).

The wheel's `profanity_check/data/{vectorizer,model}.joblib` are loaded directly (rather than importing the
package, which loads them at import time) so that their hashes can be recorded and scikit-learn's version warnings
handled here. Like any joblib file they are pickles: they are trusted exactly as much as the installed package.
The model runs on the CPU whatever `device` says.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from redlat.hashing import hash_files
from redlat.packages import package_dir
from redlat.paths import cache_dir
from redlat.scoring.base import BaseScorer, check_label
from redlat.scoring.registry import register_scorer

log = logging.getLogger(__name__)

NAME = "profanity"
PACKAGE = "profanity_check"
DISTRIBUTION = "alt-profanity-check"
VERSION = "1.9.1"
INSTALL = f"pip install --no-deps {DISTRIBUTION}=={VERSION}"
LABELS = ("offensive",)
_FILES = ("vectorizer.joblib", "model.joblib")
_warned: set[str] = set()


def package_data_dir() -> Path:
    """The wheel's `profanity_check/data` folder, found without importing the package."""
    required = [f"data/{name}" for name in _FILES]
    return package_dir(PACKAGE, f"{DISTRIBUTION}=={VERSION}", required) / "data"


def _log_once(caught: list[warnings.WarningMessage]) -> None:
    """Report scikit-learn's warnings (e.g. the model was pickled by another version) once per process."""
    for item in caught:
        text = f"{item.category.__name__}: {item.message}"
        if text in _warned:
            continue
        _warned.add(text)
        log.warning("%s (%s) warned: %s", NAME, DISTRIBUTION, text)


def _quietly(fn: Any, *args: Any) -> Any:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args)
    _log_once(caught)
    return result


class ProfanityScorer(BaseScorer):
    def __init__(
        self,
        *,
        label: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        cache: Path | None = None,
    ) -> None:
        import joblib

        label = check_label(NAME, LABELS, label or LABELS[0])
        data_dir = package_data_dir()
        paths = [data_dir / f for f in _FILES]
        super().__init__(
            name=NAME,
            labels=LABELS,
            label=label,
            weights=hash_files(paths, cache=cache_dir(cache)),
            batch_size=batch_size,
        )
        if device != "cpu":
            log.debug("%s runs on the CPU (scikit-learn); ignoring device=%r", NAME, device)
        self.vectorizer = _quietly(joblib.load, paths[0])
        self.model = _quietly(joblib.load, paths[1])
        classes = [int(c) for c in self.model.classes_]
        self._column = classes.index(1)

    def _predict_batch(self, texts: list[str]) -> list[list[float]]:
        features = _quietly(self.vectorizer.transform, texts)
        probs = _quietly(self.model.predict_proba, features)
        return [[float(row[self._column])] for row in probs]


@register_scorer("profanity", harm="offensive", description="alt-profanity-check SVM (offline)")
def load(
    *, label: str | None = None, device: str = "cpu", batch_size: int = 64, cache: Path | None = None
) -> ProfanityScorer:
    return ProfanityScorer(label=label, device=device, batch_size=batch_size, cache=cache)
