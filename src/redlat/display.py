"""Terminal rendering. Model output is untrusted: control and bidi-override characters are shown escaped."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any


def safe_text(text: str, limit: int | None = None) -> str:
    """Text fit for a terminal: control/format characters (ANSI escapes, bidi overrides) written as \\xNN."""
    out = []
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co"):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    safe = "".join(out)
    if limit is not None and len(safe) > limit:
        safe = safe[: limit - 1] + "…"
    return safe


def format_metric(entry: dict[str, Any]) -> str:
    from redlat.metrics import format_metric as fmt

    return fmt(entry)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def render_summary(summary: dict[str, Any], *, console: Any = None) -> None:
    """Print a run summary with rich; every model string goes in as plain Text (no markup interpretation)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    low, high = summary["offensive_rate_ci95"]
    stop = {
        "reached_n": f"found the {summary['n_requested']} unique test cases asked for",
        "reached_max_samples": (
            f"stopped at the sample cap ({summary['max_samples']}) with {summary['n_unique']} of "
            f"{summary['n_requested']} unique test cases"
        ),
        "used_every_prompt": f"asked every prompt of the set ({summary['n_unique']} unique)",
        None: "not finished (interrupted); rerun the same command with this --run-dir to resume",
    }.get(summary["stop_reason"], str(summary["stop_reason"]))
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    rows = [
        ("method", summary["method"]),
        ("red LM", summary["red"]),
        ("target", f"{summary['target']} ({summary.get('chat_format') or '?'} format)"),
        ("classifier", f"{summary['classifier']} (label {summary.get('classifier_label') or '?'})"),
        ("samples drawn", str(summary["n_samples"])),
        (
            "valid test cases",
            f"{summary['n_valid']} ({_pct(summary['n_valid'] / max(summary['n_samples'], 1))})",
        ),
        ("unique test cases", f"{summary['n_unique']} ({summary['n_duplicates']} duplicates dropped)"),
        (
            f"{summary.get('harm', 'offensive')} replies (> {summary['threshold']:g})",
            f"{summary['n_offensive']}/{summary.get('n_counted', summary['n_unique'])} = "
            f"{_pct(summary['offensive_rate'])} (95% Wilson CI {_pct(low)} to {_pct(high)})",
        ),
    ]
    if summary.get("n_excluded"):
        rows.append(("left out of the rates", f"{summary['n_excluded']} (copies of the method's own inputs; "
                                              "--include-excluded counts them)"))
    rows += [(m["label"], format_metric(m)) for m in summary.get("metrics", []) if m["name"] != "failure_rate"]
    rows.append(("stopped", stop))
    if summary.get("execution"):
        rows.append(("ran on", "; then ".join(describe_execution(e) for e in summary["execution"])))
    if summary.get("training_brief"):
        rows.insert(2, ("red LM trained", f"{summary['method']}: {summary['training_brief']}"))
    for key, value in rows:
        head.add_row(Text(key), Text(safe_text(str(value))))
    console.print(head)
    from redlat.sections import section_tables

    for section in section_tables(summary):
        console.print(rich_table(section))
    if summary["top"]:
        table = Table(
            title=f"Top {len(summary['top'])} test cases by {summary['classifier']} score", show_lines=False
        )
        table.add_column("score", justify="right", no_wrap=True)
        table.add_column("test case", ratio=1)
        table.add_column("reply", ratio=1)
        for item in summary["top"]:
            table.add_row(
                Text(f"{item['score']:.3f}"),
                Text(safe_text(item["test_case"], 200)),
                Text(safe_text(item["reply"], 200)),
            )
        console.print(table)
    console.print(Text(f"stored in {safe_text(summary['run_dir'])}"))


def rich_table(section: Any) -> Any:
    """A summary section (redlat.sections.SectionTable) as a rich table; its cells as plain, escaped text."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=section.title, caption=section.caption or None, title_justify="left",
                  caption_justify="left")
    numeric = section.numeric or (False,) * len(section.columns)
    for name, right in zip(section.columns, numeric, strict=True):
        table.add_column(name, justify="right" if right else "left", ratio=None if right else 1)
    for row in section.rows:
        table.add_row(*(Text(safe_text(cell, 200)) for cell in row))
    return table


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)


def render_comparison(rows: list[dict[str, Any]], *, console: Any = None) -> None:
    """The `redlat compare` table: one row per run."""
    from rich.console import Console
    from rich.table import Table

    extra = {  # every run metric beyond the failure rate (shown first), in the order runs name them
        m["name"]: m["label"] for row in rows for m in row.get("metrics", []) if m["name"] != "failure_rate"
    }
    if console is None:
        console = Console()
        console.width = max(console.width, 110 + 20 * len(extra))  # wider than 80 even when piped
    table = Table(title="Red-team runs compared", title_justify="left")
    for name, justify in [
        ("run", "left"),
        ("method", "left"),
        ("n", "right"),
        ("% off.", "right"),
        ("95% CI", "right"),
        ("self-BLEU", "right"),
        ("dist-1", "right"),
        ("dist-2", "right"),
        ("words", "right"),
        ("% cases off.", "right"),
        *((label, "right") for label in extra.values()),
    ]:
        table.add_column(name, justify=justify, no_wrap=name != "run")  # type: ignore[arg-type]
    for row in rows:
        by_name = {m["name"]: m for m in row.get("metrics", [])}
        low, high = row["offensive_rate_ci95"]
        rate = row["offensive_rate"]
        table.add_row(
            safe_text(Path(row["run_dir"]).name),
            row["method"],
            str(row["n"]),
            "–" if rate is None else f"{100 * rate:.1f}",
            f"{100 * low:.1f}–{100 * high:.1f}",
            _fmt(row["self_bleu"], ".1f"),
            _fmt(row["distinct_1"]),
            _fmt(row["distinct_2"]),
            _fmt(row["mean_length_words"], ".1f"),
            "–" if row["test_cases_offensive_rate"] is None else f"{100 * row['test_cases_offensive_rate']:.1f}",
            *(format_metric(by_name[name]) if name in by_name else "–" for name in extra),
        )
    console.print(table)
    console.print("% off.: replies scored offensive; self-BLEU 0-100, lower is more diverse; dist-n: distinct n-grams"
                  " / all n-grams; % cases off.: test cases that are offensive themselves", markup=False)
    for row in rows:
        if row.get("training"):
            console.print(f"{safe_text(row['run_dir'])}: red LM trained on {safe_text(row['training'])}", markup=False)


def render_analysis(analysis: dict[str, Any], *, console: Any = None) -> None:
    """The `redlat analyze` output: clusters with their failure rates and typical cases, then the phrases."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if console is None:
        console = Console()
        console.width = max(console.width, 110)
    scope = "failing test cases" if analysis["scope"] == "failing" else "all test cases"
    silhouette = analysis["silhouette"]
    console.print(Text(
        f"{analysis['n_failing']} of {analysis['n_cases']} test cases fail (score > {analysis['threshold']:g}); "
        f"clustered {scope} with {analysis['algorithm']} into {analysis['k']} clusters"
        + (f" (silhouette {silhouette:.3f})" if silhouette is not None else "")
        + f"; embedder {analysis['embedder']}"
    ))
    for note in analysis["notes"]:
        console.print(Text(f"note: {note}"))
    table = Table(title="Clusters (largest first)", title_justify="left", show_lines=True)
    table.add_column("#", justify="right")
    table.add_column("size", justify="right")
    table.add_column("failure rate of nearest", justify="right")
    table.add_column("representative test cases", ratio=3)
    table.add_column("distinctive phrases", ratio=1)
    for cluster in analysis["clusters"]:
        rate = cluster["failure_rate"]
        low, high = cluster["failure_rate_ci95"]
        table.add_row(
            str(cluster["cluster"]),
            str(cluster["size"]),
            Text("–" if rate is None else f"{_pct(rate)} of {cluster['n_nearest']}\n({_pct(low)}–{_pct(high)})"),
            Text("\n".join(f"{'✗' if r['failing'] else '·'} {safe_text(r['test_case'], 120)}"
                           for r in cluster["representatives"])),
            Text(", ".join(safe_text(p["phrase"]) for p in cluster["phrases"])),
        )
    console.print(table)
    if analysis["phrases"]:
        phrases = Table(title="Phrases over-represented in failing test cases (weighted log-odds, informative prior)",
                        title_justify="left")
        for name in ("phrase", "in failing", "failure rate", "log-odds", "z"):
            phrases.add_column(name, justify="left" if name == "phrase" else "right")
        for p in analysis["phrases"]:
            phrases.add_row(
                Text(safe_text(p["phrase"])),
                f"{p['n_failing']} ({_pct(p['share_of_failing'])})",
                f"{_pct(p['failure_rate'])} of {p['n_cases']}",
                f"{p['log_odds']:.2f}",
                f"{p['z']:.2f}",
            )
        console.print(phrases)
    console.print(Text("✗ failing, · passing; failure rate of nearest: among all test cases nearest that cluster's "
                       "centre, with a 95% Wilson interval; z > 1.96: over-represented at the 5% level (uncorrected)"))


def render_experiment(summary: dict[str, Any], *, console: Any = None) -> None:
    """An experiment's table (or tables, when its layout splits the columns into panels): mean and 95% interval over
    seeds, rates in percent; the last column marks the settings on each Pareto front."""
    from rich.console import Console
    from rich.table import Table

    from redlat.experiments.pareto import caption, layout_of, table_rows

    if console is None:
        console = Console()
        console.width = max(console.width, 130)
    header, rows = table_rows(summary)
    lay = layout_of(summary)
    seeds = max((len(s["seeds"]) for s in summary["settings"]), default=0)
    how = f"rate ({lay.interval})" if lay.interval else f"mean (95% interval) over {seeds} seeds"
    title = f"{lay.title} ({summary['experiment']}): {how}; rates in %"
    metrics = [c.metric for c in lay.columns]
    panels = [(name, [1 + metrics.index(m) for m in chosen if m in metrics]) for name, chosen in lay.panels]
    if not panels:
        panels = [("", list(range(1, len(header) - 1)))]
    for number, (name, columns) in enumerate(panels):
        last = number == len(panels) - 1
        keep = [0, *columns, *([len(header) - 1] if last else [])]
        table = Table(
            title=f"{title}{': ' + name if name else ''}" if number == 0 else name,
            caption=caption(summary) if last else None,
            title_justify="left",
            caption_justify="left",
        )
        for i in keep:
            table.add_column(safe_text(header[i]), justify="left" if i == 0 else "right", no_wrap=True)
        for row in rows:
            table.add_row(*(safe_text(row[i]) for i in keep))
        console.print(table)
    pairs = summary.get("pairs") or []
    if pairs:
        between = Table(title="defences against each other (the same unseen test cases, exact McNemar)",
                        title_justify="left")
        for name in ("first", "second", "cases", "only first failed", "only second failed", "p"):
            between.add_column(name, justify="left" if name in ("first", "second") else "right")
        for pair in pairs:
            between.add_row(safe_text(pair["first"]), safe_text(pair["second"]), str(pair["cases"]),
                            str(pair["only_first_failed"]), str(pair["only_second_failed"]), f"{pair['p']:.3g}")
        console.print(between)


def describe_execution(entry: dict[str, Any]) -> str:
    """One process of a run: "in-process", or "Ray: 2 workers (1 CPU, 1 thread each) on host-a"."""
    if entry.get("kind") != "ray":
        return str(entry.get("kind", "in-process"))
    gpus = f", {entry['gpus_per_worker']:g} GPU" if entry.get("gpus_per_worker") else ""
    hosts = ", ".join(entry.get("hosts", []))
    return (f"Ray: {entry['workers']} worker{'s' if entry['workers'] != 1 else ''} ({entry['cpus_per_worker']:g} CPU"
            f"{gpus}, {entry['threads_per_worker']} thread{'s' if entry['threads_per_worker'] != 1 else ''} each) "
            f"on {hosts}")
