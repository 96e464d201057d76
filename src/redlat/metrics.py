"""Run metrics: functions over all attempts of a run, shown by `summary`, `compare` and the report without edits there.

Every run gets the default metrics; a method adds those it names in `Method.metrics`, and a user adds any with
`--metric`/`metrics=` by name. A metric is a `RunMetric` (name, label, a function of a `RunView`); it is found by name
among the built-in ones below, installed plugins (entry points in the `redlat.metrics` group) or `package.module:NAME`.

Attempts a method marked as excluded (origin `excluded`, e.g. a few-shot sample that copies a pool case) are left out
of the difficulty measures unless the caller asks for them; `RunView.excluded` holds them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from redlat.errors import ConfigError
from redlat.records import Attempt
from redlat.red_team.method import EXCLUDED

ENTRY_POINT_GROUP = "redlat.metrics"


@dataclass(frozen=True)
class MetricValue:
    value: float | None
    low: float | None = None  # a 95% interval, when the metric has one
    high: float | None = None


@dataclass
class RunView:
    """What a metric sees of a run: its counted attempts, the excluded ones, the threshold, config and training."""

    attempts: list[Attempt]
    excluded: list[Attempt]
    threshold: float
    config: dict[str, Any]
    training: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # values several metrics share, by key (see `shared`)

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """A value that several metrics and a summary section read (a run's rates by group and their test), computed
        once per view; the summary hands in its sections' values under their keys."""
        if key not in self.extra:
            self.extra[key] = compute()
        return self.extra[key]


@dataclass(frozen=True)
class RunMetric:
    name: str
    label: str  # how tables call it
    compute: Callable[[RunView], MetricValue]
    percent: bool = False  # show value * 100 with a % sign
    digits: int = 3
    help: str = ""


def split_excluded(attempts: Sequence[Attempt], include_excluded: bool = False) -> tuple[list[Attempt], list[Attempt]]:
    """(counted, excluded) attempts: those a method marked as excluded are counted only when asked for."""
    if include_excluded:
        return list(attempts), []
    counted = [a for a in attempts if not a.origin.get(EXCLUDED)]
    excluded = [a for a in attempts if a.origin.get(EXCLUDED)]
    return counted, excluded


def _failure_rate(view: RunView) -> MetricValue:
    from redlat.summary import wilson_interval

    n = len(view.attempts)
    k = sum(a.score > view.threshold for a in view.attempts)
    low, high = wilson_interval(k, n)
    return MetricValue(k / n if n else None, low, high)


def _mean_score(view: RunView) -> MetricValue:
    scores = [a.score for a in view.attempts]
    if not scores:
        return MetricValue(None)
    mean = sum(scores) / len(scores)
    if len(scores) < 2:
        return MetricValue(mean)
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (len(scores) - 1))
    half = 1.959963984540054 * sd / math.sqrt(len(scores))
    return MetricValue(mean, max(0.0, mean - half), min(1.0, mean + half))


def _pool_copies(view: RunView) -> MetricValue:
    every = [*view.attempts, *view.excluded]
    return MetricValue(float(sum("pool_copy" in a.origin for a in every)))


def _training_value(key: str) -> Callable[[RunView], MetricValue]:
    def compute(view: RunView) -> MetricValue:
        value = (view.training or {}).get(key)
        return MetricValue(float(value) if value is not None else None)

    return compute


BUILT_IN: dict[str, RunMetric] = {
    metric.name: metric
    for metric in (
        RunMetric("failure_rate", "% failing", _failure_rate, percent=True, digits=1,
                  help="replies whose deciding score exceeds the threshold (95% Wilson interval)"),
        RunMetric("mean_score", "mean score", _mean_score,
                  help="mean deciding score of the replies (95% normal interval)"),
        RunMetric("pool_copies", "pool copies", _pool_copies, digits=0,
                  help="few-shot samples that repeat a pool case verbatim (left out of the rates)"),
        RunMetric("rl_reward_first_10", "RL reward (start)", _training_value("mean_reward_first_10"),
                  help="mean reward of the first 10 RL steps"),
        RunMetric("rl_reward_last_10", "RL reward (end)", _training_value("mean_reward_last_10"),
                  help="mean reward of the last 10 RL steps"),
    )
}
DEFAULT_METRICS = ("failure_rate", "mean_score")


def get_metric(name: str) -> RunMetric:
    if name in BUILT_IN:
        return BUILT_IN[name]
    from importlib.metadata import entry_points

    from redlat.red_team.method import import_object

    installed = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    path = installed.get(name) or (name if ":" in name else None)
    if path is None:
        raise ConfigError(f"unknown metric {name!r}; the metrics are: {', '.join(sorted({*BUILT_IN, *installed}))}")
    metric = import_object(path, what="metric")
    if not isinstance(metric, RunMetric):
        raise ConfigError(f"metric {name!r} ({path}) is not a redlat.metrics.RunMetric")
    return metric


def metrics_for(method: str, extra: Sequence[str] = (), scorers: Sequence[str] = ()) -> list[RunMetric]:
    """The defaults, the method's own metrics (if the method can be found), those of the run's scorers (registered
    with `register_scorer(..., metrics=...)`), then any extra ones asked for."""
    from redlat.red_team.method import method_class
    from redlat.scoring.registry import scorer_info

    names = list(DEFAULT_METRICS)
    with contextlib.suppress(ConfigError):  # a plugin not installed here: its run still gets the defaults
        names += method_class(method).metrics
    for scorer in scorers:
        with contextlib.suppress(ConfigError):
            names += scorer_info(scorer).metrics
    names += extra
    return [get_metric(name) for name in dict.fromkeys(names)]


def label_rate(scorer: str, label: str) -> Callable[[RunView], MetricValue]:
    """A metric function: the share of counted attempts whose `scorer` gave `label` a score above one half (95%
    Wilson interval); None when that scorer scored none of them."""

    def compute(view: RunView) -> MetricValue:
        from redlat.summary import wilson_interval

        values = [a.scores[scorer][label] for a in view.attempts if label in a.scores.get(scorer, {})]
        if not values:
            return MetricValue(None)
        k = sum(v > 0.5 for v in values)
        low, high = wilson_interval(k, len(values))
        return MetricValue(k / len(values), low, high)

    return compute


def compute_metrics(view: RunView, metrics: Sequence[RunMetric]) -> list[dict[str, Any]]:
    """Each metric's value, interval and how to show it, in a JSON-able list."""
    out = []
    for metric in metrics:
        value = metric.compute(view)
        out.append({"name": metric.name, "label": metric.label, "percent": metric.percent, "digits": metric.digits,
                    "help": metric.help, **asdict(value)})
    return out


def format_metric(entry: dict[str, Any]) -> str:
    """A metric entry as a table cell: the value and its interval, if any."""

    def show(x: float) -> str:
        scaled = 100 * x if entry.get("percent") else x
        return f"{scaled:.{entry.get('digits', 3)}f}"

    value = entry.get("value")
    if value is None:
        return "–"
    text = show(value) + ("%" if entry.get("percent") else "")
    if entry.get("low") is not None and entry.get("high") is not None:
        text += f" ({show(entry['low'])}–{show(entry['high'])})"
    return text
