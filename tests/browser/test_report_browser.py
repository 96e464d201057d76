"""The report in a real headless Chromium: hostile model text stays inert and literal; the page works and is visible."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.browser.conftest import file_url
from tests.fakes import BagOfWordsEmbedder
from tests.synthetic_runs import write_run

from redlat.config import ReportConfig
from redlat.report.render import build_report

# Each would run script, load something or break out of its element if it reached the page as markup.
PAYLOADS = [
    "<script>window.__pwned = 'script'</script>",
    "<img src=x onerror=\"window.__pwned='img'\">",
    "\"><svg onload=\"window.__pwned='svg'\"></svg>",
    "</span></td></tr></table><script>window.__pwned='table'</script>",
    "</textarea><iframe src=\"javascript:window.top.__pwned='iframe'\"></iframe>",
    "<a href=\"javascript:window.__pwned='link'\">click me</a>",
    "{{ 7*7 }} ${7*7} <!-- comment --> &amp; &lt;b&gt;",
    "<style>body{display:none}</style><b onmouseover=\"window.__pwned='hover'\">bold?</b>",
    "<img src=\"https://example.invalid/beacon.png\">",
    "<details open ontoggle=\"window.__pwned='toggle'\">",
]
BENIGN = [
    "What is your favourite book?",
    "Where did you grow up?",
    "What do you do for fun on weekends?",
    "How do you like your coffee?",
    "Which city would you most like to visit?",
    "What was your first job?",
    "Do you have any pets?",
    "What music do you listen to?",
    "What is the best film you saw this year?",
    "How did you learn to cook?",
    "What makes you laugh?",
    "What is your favourite season?",
]
# The directory's own name is hostile too: it is shown as the run's title.
HOSTILE_DIR = "run-<b onclick=alert(1)>bold"


def _hostile_run(root: Path, name: str, shift: int) -> Path:
    cases = [f"{p} number {i + shift}?" for i, p in enumerate(PAYLOADS)] + [f"{b} ({shift})" for b in BENIGN]
    # Replies are hostile too; the payload cases fail, the benign ones pass.
    replies = [PAYLOADS[(i + 3) % len(PAYLOADS)] for i in range(len(PAYLOADS))] + [
        f"I like that question {i}." for i in range(len(BENIGN))
    ]
    scores = [0.6 + 0.03 * i for i in range(len(PAYLOADS))] + [0.05 + 0.01 * i for i in range(len(BENIGN))]
    return write_run(root / name, cases, scores, replies=replies)


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("hostile")
    runs = [_hostile_run(root, HOSTILE_DIR, 0), _hostile_run(root, "second", 100)]
    path = build_report(runs, root / "report.html", ReportConfig(score_test_cases=False),
                        embedder=BagOfWordsEmbedder())
    expected_cases = {f"{p} number {i + shift}?" for shift in (0, 100) for i, p in enumerate(PAYLOADS)}
    return {"path": path, "cases": expected_cases, "replies": set(PAYLOADS)}


def _open(browser: Any, path: Path, *, bypass_csp: bool) -> tuple[Any, Any, dict[str, list]]:
    context = browser.new_context(bypass_csp=bypass_csp, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    seen: dict[str, list] = {"dialogs": [], "requests": [], "errors": [], "console": []}

    def on_dialog(dialog: Any) -> None:
        seen["dialogs"].append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("request", lambda request: seen["requests"].append(request.url))
    page.on("pageerror", lambda error: seen["errors"].append(str(error)))
    page.on("console", lambda message: seen["console"].append((message.type, message.text)))
    page.goto(file_url(path), wait_until="load")
    return context, page, seen


def _texts(page: Any, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "els => els.map(e => e.textContent)")


def test_hostile_text_is_inert_and_literal(browser, hostile_report):
    # The page's Content-Security-Policy would block injected scripts anyway; switch it off so that this test
    # proves the escaping alone.
    context, page, seen = _open(browser, hostile_report["path"], bypass_csp=True)
    try:
        page.check("#reveal-all")
        for handle in page.query_selector_all(".blur")[:60]:
            handle.click()
        for handle in page.query_selector_all("b, a, details"):  # anything a payload might have made
            handle.hover()
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert seen["dialogs"] == []
        assert seen["errors"] == []
        # Only our one script, only our own images (data: PNGs), no frames, no SVG, no styles smuggled in.
        assert page.eval_on_selector_all("script", "els => els.length") == 1
        assert page.eval_on_selector_all("iframe, svg, textarea, details[open]", "els => els.length") == 0
        assert page.eval_on_selector_all("style", "els => els.length") == 1
        sources = page.eval_on_selector_all("img", "els => els.map(e => e.getAttribute('src'))")
        assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
        assert page.eval_on_selector_all("a[href^='javascript']", "els => els.length") == 0
        # Nothing fetched but the page itself and its inline images.
        assert all(url.startswith(("file:", "data:")) for url in seen["requests"]), seen["requests"]
        # Every payload is on the page as text, character for character.
        cases = set(_texts(page, "td > .test-case"))
        replies = set(_texts(page, "td > .reply"))
        assert hostile_report["cases"] <= cases
        assert hostile_report["replies"] <= replies
        representatives = _texts(page, "ol.reps .model-text")
        assert representatives and set(representatives) <= hostile_report["cases"]  # clusters of failing cases
        # The hostile directory name is the run's heading, literally.
        assert page.inner_text("#run-1 h2").startswith(HOSTILE_DIR)
        assert "bold" not in page.eval_on_selector_all("b", "els => els.map(e => e.textContent).join()")
    finally:
        context.close()


def test_report_works_under_its_own_policy(browser, hostile_report):
    """With the CSP on, our script (admitted by hash) runs: blur, reveal, search and sort all work."""
    context, page, seen = _open(browser, hostile_report["path"], bypass_csp=False)
    try:
        assert seen["errors"] == []
        violations = [text for kind, text in seen["console"] if "Content Security Policy" in text]
        assert violations == []  # our script is admitted by its hash, and nothing else tries to run or load
        first = page.locator("#failures-1 td > .test-case").first
        assert "blur" in page.evaluate("el => getComputedStyle(el).filter", first.element_handle())
        first.click()  # the blur fades out over a short transition
        page.wait_for_function("el => getComputedStyle(el).filter === 'none'", arg=first.element_handle(),
                               timeout=5000)
        second = page.locator("#failures-1 td > .reply").first
        assert "blur" in page.evaluate("el => getComputedStyle(el).filter", second.element_handle())

        rows = page.locator("#failures-1 tbody tr")
        total = rows.count()
        # Every failure, then the highest-scoring passing cases up to min_table_rows (20).
        assert total == ReportConfig().min_table_rows
        flags = _texts(page, "#failures-1 tbody td.flag")
        assert flags == ["yes"] * len(PAYLOADS) + ["no"] * (total - len(PAYLOADS))
        page.fill("input[data-filter='failures-1']", "iframe")
        visible = page.eval_on_selector_all("#failures-1 tbody tr", "rs => rs.filter(r => !r.hidden).length")
        assert 1 <= visible < total
        assert page.inner_text("#failures-1-count") == str(visible)
        page.fill("input[data-filter='failures-1']", "")
        assert page.inner_text("#failures-1-count") == str(total)

        score_header = page.locator("#failures-1 thead th").nth(1)
        score_header.click()  # ascending
        scores = [float(s) for s in _texts(page, "#failures-1 tbody tr td:nth-child(2)")]
        assert scores == sorted(scores)
        score_header.click()  # descending
        scores = [float(s) for s in _texts(page, "#failures-1 tbody tr td:nth-child(2)")]
        assert scores == sorted(scores, reverse=True)
    finally:
        context.close()


def test_screenshot_shows_summary_plots_and_failures(browser, hostile_report, tmp_path):
    from PIL import Image, ImageStat

    context, page, _ = _open(browser, hostile_report["path"], bypass_csp=False)
    try:
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        image = Image.open(shot).convert("L")
        assert image.width >= 1000 and image.height > 2000
        assert ImageStat.Stat(image).stddev[0] > 10  # not a blank page

        for selector in ("#content-warning", "#comparison-table", "#comparison-plot img", "#run-1 table.summary",
                         "#run-1 figure.histogram img", "#run-1 figure.cluster-map img", "#clusters-1",
                         "#phrases-1", "#failures-1", "#run-2 figure.histogram img"):
            element = page.locator(selector).first
            element.scroll_into_view_if_needed()
            assert element.is_visible(), selector
            box = element.bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 20, selector
        for image_handle in page.query_selector_all("figure img"):
            loaded = page.evaluate("img => img.complete && img.naturalWidth > 200 && img.naturalHeight > 100",
                                   image_handle)
            assert loaded, image_handle.get_attribute("alt")
        summary = page.inner_text("#run-1 table.summary")
        assert "offensive replies" in summary and "95% Wilson interval" in summary
        assert f"{len(PAYLOADS)} / {len(PAYLOADS) + len(BENIGN)}" in summary
        # The histogram is a picture of something: its pixels vary.
        region = tmp_path / "histogram.png"
        page.locator("#run-1 figure.histogram img").screenshot(path=str(region))
        assert ImageStat.Stat(Image.open(region).convert("L")).stddev[0] > 10
    finally:
        context.close()


def test_report_data_round_trips_hostile_text(hostile_report):
    """The page source never holds a payload's raw markup outside escaped text (a browser-free check, same data)."""
    html = hostile_report["path"].read_text(encoding="utf-8")
    for payload in PAYLOADS:
        if "<" in payload:
            assert payload not in html
    assert html.count("<script") == 1
    raw_markup = ("<img src=x", "<svg", "<iframe", "<textarea", "</textarea", "<details open", "<b on",
                  "<a href=\"javascript")
    for raw in raw_markup:
        assert raw not in html
