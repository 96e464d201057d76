"""scripts/method_tests.py: the tests behind the README's rankings, on synthetic runs with known counts."""

import subprocess
import sys
from pathlib import Path

from scipy.stats import fisher_exact

from synthetic_runs import write_run

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "method_tests.py"


def test_fisher_test_on_counted_attempts_only(tmp_path):
    a = write_run(tmp_path / "a", [f"a{i}?" for i in range(10)], [0.9] * 6 + [0.0] * 4)
    b = write_run(tmp_path / "b", [f"b{i}?" for i in range(10)], [0.9] * 3 + [0.0] * 7, method="few-shot",
                  origins=[{"excluded": "copy of a pool case"}] + [{}] * 9)  # one failure left out
    out = subprocess.run([sys.executable, str(SCRIPT), str(a), str(b), "--thresholds", "0.5"], capture_output=True,
                         text=True, check=True).stdout
    expected = fisher_exact([[6, 4], [2, 7]]).pvalue
    assert f"6/10 vs 2/9, Fisher exact p = {expected:.3g}" in out
    assert "per-case self-BLEU: Mann-Whitney p = " in out
