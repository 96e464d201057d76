"""Render the report's data into one self-contained HTML file (Jinja2, autoescaping on for every value).

Model text is untrusted: Jinja2 escapes every test case, reply and phrase; plots are PNG data URIs with no model
text in them; the page's only script is our own, inlined, and a Content-Security-Policy admits that script alone
(by hash), no inline event handlers, and no network at all.
"""

from __future__ import annotations

import base64
import hashlib
import math
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from redlat.atomic import write_text_atomic


def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("redlat.report", "templates"),
        autoescape=True,  # every {{ value }} is HTML-escaped, whatever the file extension
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = _pct
    env.filters["num"] = _num
    env.filters["metric"] = _metric
    env.filters["basename"] = lambda path: Path(str(path)).name
    return env


def _metric(entry: dict[str, Any] | None) -> str:
    from redlat.metrics import format_metric

    return format_metric(entry) if entry else "–"


def _pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _static(name: str) -> str:
    return resources.files("redlat.report").joinpath("static", name).read_text(encoding="utf-8")


def render_report(report: dict[str, Any], *, title: str | None = None) -> str:
    """The HTML page for data from `collect_report`."""
    from markupsafe import Markup

    from redlat import __version__

    js = _static("report.js")
    digest = base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")
    names = [run["name"] for run in report["runs"]]
    return _environment().get_template("report.html.j2").render(
        report=report,
        title=title or ", ".join(names),
        generated_at=time.strftime("%Y-%m-%d %H:%M %Z"),
        version=__version__,
        css=Markup(_static("report.css")),  # our own files, not model text
        js=Markup(js),
        script_hash=f"sha256-{digest}",
    )


def check_output(path: str | Path) -> Path:
    """The report's file name, refused before any work when it is not an .html file."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        from redlat.errors import ConfigError

        raise ConfigError(f"the report is an HTML file: give -o a name ending in .html (got {path})")
    return path


def write_report(report: dict[str, Any], path: str | Path, *, title: str | None = None) -> Path:
    path = check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, render_report(report, title=title))
    return path


def build_report(run_dirs: Sequence[str | Path], path: str | Path, cfg: Any = None, **kwargs: Any) -> Path:
    """Collect from the stores and write the page: the whole of `redlat report`."""
    from redlat.report.data import collect_report

    check_output(path)
    return write_report(collect_report(run_dirs, cfg, **kwargs), path)
