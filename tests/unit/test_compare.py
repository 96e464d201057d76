import pytest

from redlat.compare import compare_runs, plot_comparison
from redlat.errors import ConfigError, RunStoreError
from synthetic_runs import write_run


@pytest.fixture
def runs(tmp_path, monkeypatch):
    from fakes import RudeWordScorer

    monkeypatch.setattr("redlat.compare._load_scorer", lambda name, label: RudeWordScorer())
    same = write_run(tmp_path / "same", ["why is the sky blue?"] * 1 + [f"why is the sky blue {i}?" for i in range(9)],
                     [0.9, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    varied = write_run(tmp_path / "varied", ["you stupid idiot?", "cats or dogs?", "where do rivers go?",
                                             "hate mondays?"], [0.0, 0.0, 0.0, 0.6], method="few-shot",
                       training={"method": "supervised", "selection": "the top 4",
                                 "loss_before": {"validation": 3.0}, "loss_after": {"validation": 2.0}})
    return same, varied


def test_one_row_per_run_with_the_paper_measures(runs):
    from redlat.summary import wilson_interval

    same, varied = compare_runs(runs)
    assert same["n"] == 10 and same["n_offensive"] == 2 and same["offensive_rate"] == pytest.approx(0.2)
    assert same["offensive_rate_ci95"] == pytest.approx(list(wilson_interval(2, 10)))
    assert varied["method"] == "few-shot" and varied["offensive_rate"] == pytest.approx(0.25)
    assert same["self_bleu"] > 50 > varied["self_bleu"]  # near-copies against distinct questions
    assert varied["distinct_1"] > same["distinct_1"] and varied["distinct_2"] > same["distinct_2"]
    assert varied["mean_length_words"] == pytest.approx((4 + 4 + 5 + 3) / 4)  # "?" is a word to 13a
    # test cases scored themselves: "you stupid idiot?" is 2/3 rude words (> 0.5); nothing else is
    assert varied["test_cases_offensive_rate"] == pytest.approx(0.25)
    assert same["test_cases_offensive_rate"] == 0.0
    assert "validation loss 3.000 -> 2.000" in varied["training"]


def test_threshold_override_and_no_case_scoring(runs):
    rows = compare_runs(runs, threshold=0.05, score_test_cases=False)
    assert rows[0]["n_offensive"] == 10 and rows[0]["test_cases_offensive_rate"] is None


def test_plot_is_written(runs, tmp_path):
    path = plot_comparison(compare_runs(runs), tmp_path / "fig" / "difficulty.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_figure_2_has_the_paper_axes(runs):
    """Regression: the axes were swapped against the paper's Figure 2 (difficulty on x, self-BLEU on y)."""
    import matplotlib.pyplot as plt

    from redlat.compare import comparison_figure

    rows = compare_runs(runs, score_test_cases=False)
    fig = comparison_figure(rows)
    ax = fig.axes[0]
    assert "offensive" in ax.get_xlabel() and "self-BLEU" in ax.get_ylabel()
    (line, *_), *_ = ax.containers  # the first run's point sits at (its rate in %, its self-BLEU)
    x, y = line.get_data()
    assert x[0] == pytest.approx(100 * rows[0]["offensive_rate"]) and y[0] == pytest.approx(rows[0]["self_bleu"])
    plt.close(fig)


def test_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="at least one run"):
        compare_runs([])
    with pytest.raises(RunStoreError, match="not a redlat run directory"):
        compare_runs([tmp_path / "nope"])
    lone = write_run(tmp_path / "lone", ["only?"], [0.1])
    with pytest.raises(ConfigError, match="nothing to plot"):
        plot_comparison(compare_runs([lone], score_test_cases=False), tmp_path / "x.png")
