"""The self-contained HTML report: `data` gathers from the run stores, `figures` draws the plots, `render` fills
the Jinja2 template (autoescaped). `build_report(run_dirs, "report.html")` does all three."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redlat.report.render import build_report

__all__ = ["build_report"]


def __getattr__(name: str) -> Any:
    if name == "build_report":
        from redlat.report.render import build_report

        return build_report
    raise AttributeError(f"module 'redlat.report' has no attribute {name!r}")
