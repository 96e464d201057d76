"""How an experiment's results are shown: its Pareto fronts, table columns and panels (a `Layout`, built from the
run's config by the experiment's own `layout` function; redlat.experiments.registry finds it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Front:
    key: str  # the front's name in the summary and the figure's file name (pareto_KEY.png)
    y: str  # the metric on the y axis
    higher_y_is_better: bool
    y_label: str
    title: str
    mark: str  # the letter that marks its members in the table's last column


@dataclass(frozen=True)
class Column:
    header: str
    metric: str
    percent: bool = True  # a rate shown in percent; else the number with `digits` decimals
    digits: int = 2


@dataclass(frozen=True)
class Layout:
    experiment: str
    x: str  # what the defence keeps (higher is better)
    x_label: str
    references: tuple[tuple[str, str], ...]  # (setting, legend label) of the models before any defence
    fronts: tuple[Front, ...]
    columns: tuple[Column, ...]
    unbounded: tuple[str, ...]  # metrics that are not rates in [0, 1] (their interval is not clipped)
    defence_names: tuple[str, ...]  # the sweep's settings, in the config's order
    caption: str = ""
    panels: tuple[tuple[str, tuple[str, ...]], ...] = ()  # terminal: (title, metrics) per table; () = one table
    title: str = "Trojans and defences"  # the terminal table's title
    interval: str | None = None  # what a cell's (low-high) is, when not the mean and 95% interval over seeds
