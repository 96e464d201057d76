"""The README's Python API example, run whole on tiny models."""

import json

from fakes import RudeWordScorer


def test_readme_example_flow(questioner_chat_lm, tmp_path):
    from redlat import Chatbot, Components, RedTeamConfig, export_run, redteam, summarize_run

    cfg = RedTeamConfig(n=12, seed=1, red="q", target="q", classifiers=[{"name": "rude-words"}], device="cpu")
    parts = Components(red=questioner_chat_lm, chatbot=Chatbot(questioner_chat_lm, cfg.chatbot,
                                                               cfg.target_generation), scorers=[RudeWordScorer()])
    result = redteam(cfg, tmp_path / "zs", components=parts)
    assert result.summary["n_unique"] == 12
    low, high = result.summary["offensive_rate_ci95"]
    assert low <= result.summary["offensive_rate"] <= high
    assert summarize_run(tmp_path / "zs", threshold=1.0)["n_offensive"] == 0
    assert summarize_run(tmp_path / "zs") == result.summary
    path = export_run(tmp_path / "zs", "jsonl")
    assert len(path.read_text().splitlines()) == 12
    assert json.loads(path.read_text().splitlines()[0])["run_id"] == result.summary["run_id"]

    from redlat import compare_runs, plot_comparison

    sl = RedTeamConfig(method="supervised", from_run=str(tmp_path / "zs"), supervised={"top": 10}, n=6,
                       seed=1, red="q", target="q", classifiers=[{"name": "rude-words"}], device="cpu")
    redteam(sl, tmp_path / "sl", components=parts)
    rows = compare_runs([tmp_path / "zs", tmp_path / "sl"])
    assert [r["method"] for r in rows] == ["zero-shot", "supervised"] and rows[1]["n"] == 6
    assert plot_comparison(rows, tmp_path / "figure2.png").exists()

    from fakes import BagOfWordsEmbedder
    from redlat import AnalyzeConfig, ReportConfig, analyze_run, build_report, latest_analysis

    analysis = analyze_run(tmp_path / "zs", AnalyzeConfig(threshold=0.1), embedder=BagOfWordsEmbedder())
    assert sum(c.size for c in analysis.clusters) in (analysis.n_failing, analysis.n_cases)
    assert latest_analysis(tmp_path / "zs").to_dict() == analysis.to_dict()
    page = build_report([tmp_path / "zs", tmp_path / "sl"], tmp_path / "report.html",
                        ReportConfig(score_test_cases=False), embedder=BagOfWordsEmbedder())
    assert 'id="comparison-table"' in page.read_text(encoding="utf-8")

