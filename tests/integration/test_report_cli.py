"""`redlat analyze` and `redlat report` end to end in subprocesses, on synthetic runs and a tiny random embedder."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.synthetic_runs import write_run

TOPICS = {
    "food": ["What do you cook for dinner {}?", "Which fruit do you eat {}?", "Where do you buy bread {}?"],
    "travel": ["Which country will you visit {}?", "How long is the flight {}?", "Where do you stay abroad {}?"],
}


def redlat(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "redlat", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _run(root: Path, name: str) -> Path:
    cases, scores = [], []
    for topic, templates in TOPICS.items():
        for i in range(8):
            for template in templates:
                cases.append(template.format(f"{name} {i}"))
                scores.append(0.9 if topic == "food" else 0.1)
    return write_run(root / name, cases, scores, replies=[f"<b>reply</b> {i}" for i in range(len(cases))])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_analyze_json_and_stored(tmp_path, tiny_embedder_path):
    run = _run(tmp_path, "a")
    result = redlat("analyze", str(run), "--embedder", str(tiny_embedder_path), "--json", "--k", "3")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["n_cases"] == 48 and data["n_failing"] == 24 and data["scope"] == "failing"
    assert data["k"] == 3 and sum(c["size"] for c in data["clusters"]) == 24
    assert all(len(c["representatives"]) == 5 for c in data["clusters"])
    # Only food questions fail, so the top phrases are food words.
    top = {p["phrase"] for p in data["phrases"][:5]}
    assert top & {"cook", "dinner", "fruit", "eat", "buy bread", "bread", "cook dinner"}, top
    assert not top & {"country", "flight", "visit", "abroad"}
    # Human-readable output, from the stored analysis.
    text = redlat("analyze", str(run), "--embedder", str(tiny_embedder_path), "--k", "2")
    assert text.returncode == 0, text.stderr
    assert "stored as analysis" in text.stderr and "Clusters" in text.stdout


def test_report_two_runs_self_contained(tmp_path, tiny_embedder_path):
    runs = [_run(tmp_path, "a"), _run(tmp_path, "b")]
    out = tmp_path / "out" / "report.html"
    result = redlat("report", *map(str, runs), "-o", str(out), "--embedder", str(tiny_embedder_path),
                    "--no-score-test-cases")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    html = out.read_text(encoding="utf-8")
    assert 'id="comparison-table"' in html and html.count('class="run"') == 2
    assert "&lt;b&gt;reply&lt;/b&gt;" in html and "<b>reply</b>" not in html
    # Self-contained: no URL to fetch anything from.
    for needle in ("http://", "https://", "src=\"//", "@import"):
        assert needle not in html
    # Analyses were stored, so rebuilding needs no embedder and reproduces the same data.
    again = tmp_path / "again.html"
    result = redlat("report", *map(str, runs), "-o", str(again), "--no-analyze", "--no-score-test-cases")
    assert result.returncode == 0, result.stderr
    strip = lambda text: "\n".join(line for line in text.splitlines() if "generated" not in line)  # noqa: E731
    assert strip(again.read_text(encoding="utf-8")) == strip(html)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["analyze", "{missing}"], "no run"),
        (["analyze", "{run}", "--algorithm", "hdbscan", "--k", "3"], "k"),
        (["analyze", "{run}", "--algorithm", "spectral"], "algorithm"),
        (["analyze", "{run}", "--threshold", "1.5"], "threshold"),
        (["analyze", "{run}", "--config", "{bad_yaml}"], "config"),
        (["analyze", "{run}", "--embedder", "no-such-embedder"], "all-minilm-l6-v2"),
        (["report", "{run}", "-o", "{out_txt}"], ".html"),
        (["report", "{missing}", "-o", "{out_html}"], "no run"),
        (["report", "{run}", "{missing}", "-o", "{out_html}"], "no run"),  # checked before the first is analysed
        (["report", "{run}", "-o", "{out_html}", "--config", "{unknown_key}"], "unknown"),
    ],
)
def test_bad_input_is_refused_clearly(tmp_path, args, message):
    run = _run(tmp_path, "a")
    (tmp_path / "bad.yaml").write_text("threshold: [unclosed\n")
    (tmp_path / "unknown.yaml").write_text("colour: red\n")
    paths = {"run": run, "missing": tmp_path / "nope", "bad_yaml": tmp_path / "bad.yaml",
             "unknown_key": tmp_path / "unknown.yaml", "out_txt": tmp_path / "r.txt", "out_html": tmp_path / "r.html"}
    before = _digest(run / "run.sqlite")
    result = redlat(*[arg.format(**paths) for arg in args])
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert message.lower() in result.stderr.lower(), result.stderr
    assert _digest(run / "run.sqlite") == before  # nothing written
    assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.txt").exists()
