"""Summary sections: the parts of a run's summary that only some runs have (rates by group, by dialogue turn, the
longest leaked spans). Each is one `SummarySection`: the summary's JSON key, how it is computed from the counted
attempts (None: the run has none), the table `summary` and the report show, and optionally a figure for the report.
`summarize`, the terminal display and the report loop over `SECTIONS`; nothing else names them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redlat.groups import group_summary
from redlat.records import Attempt
from redlat.scoring.leak import longest_leaks
from redlat.turns import turn_summary


@dataclass(frozen=True)
class SectionTable:
    """A table as text: a title, column names (numeric ones right-aligned), rows of cells, a caption."""

    title: str
    columns: tuple[str, ...]
    rows: list[list[str]]
    numeric: tuple[bool, ...] = ()
    caption: str = ""
    figure_alt: str = ""  # what the figure shows, for the report's alt text
    figure: str | None = field(default=None, repr=False)  # PNG data URI, set by the report


@dataclass(frozen=True)
class SummarySection:
    key: str
    compute: Callable[[Sequence[Attempt], float], Any]
    table: Callable[[Any, str], SectionTable]  # (the section's data, the run's harm) -> its table
    figure: Callable[[Any, str], str] | None = None  # (data, harm) -> a PNG data URI, for the report


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def interval(low: float, high: float) -> str:
    return f"{pct(low)} to {pct(high)}"


def _group_table(data: dict[str, Any], harm: str) -> SectionTable:
    test = data["test"]
    if test.get("p") is None:
        caption = "one group: no test"
    else:
        how = f" (by {test['method']}: {test['small_cells']} cells with expected count below 5)" \
            if test.get("small_cells") else ""
        caption = (f"do the rates differ? chi-square {test['statistic']:.2f}, {test['dof']} dof, "
                   f"p = {test['p']:.3g}{how}")
    rows = [[r["group"], str(r["n"]), str(r["failures"]), pct(r["rate"]), interval(r["low"], r["high"])]
            for r in sorted(data["rows"], key=lambda r: -r["rate"])]
    return SectionTable(f"{harm} replies by group", ("group", "n", "failing", "rate", "95% Wilson interval"), rows,
                        (False, True, True, True, True), caption, "the failure rate of each group with its interval")


def _turn_table(data: dict[str, Any], harm: str) -> SectionTable:
    after = data["after"]
    parts = [f"{name} {pct(after[key]['rate']) if after[key]['n'] else '–'} (of {after[key]['n']})"
             for key, name in (("after_failure", "after a failing reply"), ("after_pass", "after a passing one"))]
    test = f"; Fisher's exact p = {after['p']:.3g}, odds ratio {after['odds_ratio']:.2f}" \
        if after.get("p") is not None else ""
    rows = [[str(r["turn"]), str(r["n"]), str(r["failures"]), pct(r["rate"]), interval(r["low"], r["high"])]
            for r in data["rows"]]
    return SectionTable(f"{harm} replies by turn", ("turn", "n", "failing", "rate", "95% Wilson interval"), rows,
                        (True,) * 5, f"the next turn fails: {'; '.join(parts)}{test}",
                        "the failure rate at each turn of the dialogues")


def _leak_table(data: list[dict[str, Any]], harm: str) -> SectionTable:
    rows = [[str(r["words"]), r["span"], r["test_case"]] for r in data]
    return SectionTable("longest leaked spans of the private text", ("words", "span", "test case"), rows,
                        (True, False, False))


def _group_figure(data: dict[str, Any], harm: str) -> str:
    from redlat.report.figures import group_bars

    return group_bars(data["rows"], harm)


def _turn_figure(data: dict[str, Any], harm: str) -> str:
    from redlat.report.figures import turn_curve

    return turn_curve(data["rows"], harm)


SECTIONS: tuple[SummarySection, ...] = (
    SummarySection("groups", group_summary, _group_table, _group_figure),
    SummarySection("turns", turn_summary, _turn_table, _turn_figure),
    SummarySection("leaks", lambda attempts, threshold: longest_leaks(attempts), _leak_table),
)


def compute_sections(attempts: Sequence[Attempt], threshold: float) -> dict[str, Any]:
    """Every section's data (None where the run has none), by its summary key."""
    return {section.key: section.compute(attempts, threshold) for section in SECTIONS}


def section_tables(summary: dict[str, Any], *, figures: bool = False) -> list[SectionTable]:
    """The tables of the sections a summary holds, with their figures when asked (the report)."""
    harm = summary.get("harm") or "offensive"
    out = []
    for section in SECTIONS:
        data = summary.get(section.key)
        if not data:
            continue
        table = section.table(data, harm)
        if figures and section.figure is not None:
            table = SectionTable(**{**table.__dict__, "figure": section.figure(data, harm)})
        out.append(table)
    return out
