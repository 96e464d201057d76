"""`redlat experiment transfer`: AT under each norm and LAT at each block, each measured against every norm's PGD and
every held-out attack. A tiny sweep through the CLI: the matrix in the summary (rows, columns, the change against
plain fine-tuning), the heatmap, the terminal tables, and the experiment's section in `redlat report`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

TINY = {
    "seeds": [0],
    "base_epochs": 2,
    "attack_steps": 2,
    "eval_pgd_steps": 2,
    "width": 4,
    "defences": [{"kind": "none"}, {"kind": "at", "norm": "l1", "eps": 2.0},
                 {"kind": "lat", "layers": ["block1"], "eps": 0.25}],
    "eval_attacks": ["pgd-linf:0.1", "pgd-l1:2", "blur:1"],
    "held_out": ["blur"],
    "device": "cpu",
}


def redlat(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "redlat", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ})


def test_transfer_matrix_table_heatmap_and_report(tmp_path):
    config = tmp_path / "transfer.yaml"
    config.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "run"
    result = redlat("experiment", "transfer", "--config", str(config), "--run-dir", str(run), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["experiment"] == "transfer" and summary["trojans"] == []
    matrix = summary["transfer"]
    assert matrix["rows"] == ["base", "none", "at-l1-2", "lat-block1-l2-0.25x"]
    assert matrix["columns"] == ["pgd-linf:0.1", "pgd-l1:2", "blur:1"] and matrix["held_out"] == [False, False, True]
    by_row = dict(zip(matrix["rows"], matrix["accuracy"], strict=True))
    settings = {s["setting"]: s["metrics"] for s in summary["settings"]}
    assert by_row["at-l1-2"][1] == settings["at-l1-2"]["robust:pgd-l1:2"]["mean"]
    assert matrix["change_against"] == "none"
    change = dict(zip(matrix["rows"], matrix["change"], strict=True))
    assert change["none"] == [0.0, 0.0, 0.0]
    assert change["at-l1-2"][0] == by_row["at-l1-2"][0] - by_row["none"][0]
    assert "clean_vs_trojan_success" not in summary["pareto"]  # no trojans, no trojan front
    heatmap = run / "transfer_matrix.png"
    assert heatmap.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and summary["figures"]["transfer_matrix"] == str(heatmap)

    table = redlat("summary", str(run))
    assert table.returncode == 0, table.stderr
    assert "Transfer between perturbation types" in table.stdout and "held-out attacks" in table.stdout
    assert "pgd-l1:2" in table.stdout and "at-l1-2" in table.stdout

    page = tmp_path / "report.html"
    made = redlat("report", str(run), "--output", str(page), "--no-analyze")
    assert made.returncode == 0, made.stderr
    html = page.read_text()
    assert "Transfer between perturbation types: run" in html and "Transfer matrix: robust accuracy" in html
    assert html.count("data:image/png;base64,") >= 2  # the front and the heatmap


def test_an_unfinished_experiment_is_not_reported(tmp_path):
    from redlat.config import TransferConfig
    from redlat.report.data import collect_report
    from redlat.store import RunStore

    cfg = TransferConfig.model_validate(TINY)
    from redlat.experiments.trojans_vision import TRANSFER, open_store

    open_store(tmp_path / "run", cfg, {}, TRANSFER).close()
    with RunStore(tmp_path / "run") as store:
        assert store.run_info().command == "experiment transfer"
    import pytest

    from redlat.errors import ConfigError

    with pytest.raises(ConfigError, match="transfer experiment has not finished"):
        collect_report([tmp_path / "run"])
