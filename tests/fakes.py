"""Fake scorers for fast tests: deterministic, instant, and honest about being fakes."""

from __future__ import annotations

from collections.abc import Sequence

from redlat.scoring.base import ScoreBatch

RUDE = {"stupid", "dumb", "hate", "idiot"}


class RudeWordScorer:
    """Scores a text by the share of its words that are rude (labels: rude, polite)."""

    name = "rude-words"
    labels = ("rude", "polite")
    label = "rude"
    weights: dict[str, str] = {}  # noqa: RUF012 - a fake has no weights

    def __init__(self, fail_on_call: int | None = None, exc: type[BaseException] = KeyboardInterrupt) -> None:
        self.calls = 0
        self.fail_on_call = fail_on_call
        self.exc = exc

    def score(self, texts: Sequence[str]) -> ScoreBatch:
        self.calls += 1
        if self.fail_on_call is not None and self.calls == self.fail_on_call:
            raise self.exc()
        scores = []
        for text in texts:
            words = text.lower().replace("?", " ").split()
            scores.append(sum(w in RUDE for w in words) / len(words) if words else 0.0)
        return ScoreBatch(scores=scores, detail=[{"rude": s, "polite": 1 - s} for s in scores])

    def __call__(self, texts: Sequence[str]) -> list[float]:
        return self.score(texts).scores


class BagOfWordsEmbedder:
    """Hashed word counts (scikit-learn's HashingVectorizer), L2-normalised: texts that share words lie close.

    A stand-in for a sentence-transformers model in fast tests; deterministic and instant."""

    name = "bag-of-words"
    source = "sklearn HashingVectorizer (test fake)"

    def __init__(self, n_features: int = 512) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self._vectorizer = HashingVectorizer(n_features=n_features, alternate_sign=False, norm="l2")

    def __call__(self, texts: Sequence[str]):
        return self._vectorizer.transform(list(texts)).toarray()


def tiny_parts(lm, cfg, scorer=None, *, red=True):
    """Run components around one tiny LM: it is the red LM (unless red=False) and the target; RudeWordScorer decides."""
    from redlat.chatbot import Chatbot
    from redlat.red_team.runner import Components

    return Components(red=lm if red else None, chatbot=Chatbot(lm, cfg.chatbot, cfg.target_generation),
                      scorers=[scorer or RudeWordScorer()])


KILL_SWITCH_ENV = "REDLAT_TEST_KILL_SWITCH"  # a file path: the process that scores while it exists kills itself


class _KillableRudeWords(RudeWordScorer):
    """RudeWordScorer that, while the kill-switch file exists, removes it and kills its own process with SIGKILL
    (only one process can win the rename): a worker dying in the middle of a round."""

    def score(self, texts: Sequence[str]) -> ScoreBatch:
        import os
        import signal

        switch = os.environ.get(KILL_SWITCH_ENV)
        if switch:
            try:
                os.rename(switch, f"{switch}.fired")
            except OSError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return super().score(texts)


def load_rude_words(*, label=None, device="cpu", batch_size=64, cache=None):
    """RudeWordScorer as a loadable scorer (`fakes:load_rude_words`), for runs whose workers load their own scorers;
    it dies once when the kill switch (KILL_SWITCH_ENV) is armed."""
    return _KillableRudeWords()


class InterruptAfter:
    """A progress callback that records each line and raises KeyboardInterrupt at the n-th (an interrupted sweep)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) == self.n:
            raise KeyboardInterrupt
