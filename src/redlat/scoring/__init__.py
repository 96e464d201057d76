"""Scorers: every one maps a list of texts to P(offensive) in [0, 1] per text.

    from redlat.scoring import load_scorer
    scorer = load_scorer("jigsaw-bilstm")          # or "profanity", or a Hugging Face id / local folder
    scorer(["you are so dumb"])                    # -> [0.98...]   (a plain reward function)
    scorer.judge([Exchange(test_case, reply)])     # the runner's call: test case and context as well
    scorer.score(texts).detail                     # every label's score per text

Importing this package is light: torch, transformers, h5py and scikit-learn are imported when a scorer loads.
"""

from __future__ import annotations

from redlat.scoring.base import BaseScorer, Exchange, ScoreBatch, Scorer, harm_of, score_exchanges
from redlat.scoring.registry import OFFLINE_SCORERS, load_scorer, register_scorer, scorer_info, scorer_names

__all__ = [
    "OFFLINE_SCORERS",
    "BaseScorer",
    "Exchange",
    "ScoreBatch",
    "Scorer",
    "harm_of",
    "load_scorer",
    "register_scorer",
    "score_exchanges",
    "scorer_info",
    "scorer_names",
]
