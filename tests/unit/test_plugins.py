"""The seams, through the worked example of docs/architecture.md: a method and a scorer added as one file each
(docs/examples/), run by the unchanged runner, with the method's own metric in summary and compare."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from redlat.chatbot import Chatbot
from redlat.config import RedTeamConfig
from redlat.errors import ConfigError
from redlat.red_team.method import BUILT_IN, method_class, method_names
from redlat.red_team.runner import Components, redteam
from redlat.scoring import load_scorer, scorer_info

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.fixture()
def examples_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    yield
    for name in ("template_questions", "echo_scorer"):
        sys.modules.pop(name, None)


def test_a_method_and_a_scorer_from_one_file_each(examples_importable, questioner_chat_lm, tmp_path):
    from redlat.compare import compare_runs

    cfg = RedTeamConfig(method="template_questions:TemplateQuestions", n=50, target="q", device="cpu",
                        classifiers=[{"name": "echo_scorer:load"}], threshold=0.3,
                        method_settings={"fillers": ["cats", "dogs", "owls"]})
    assert cfg.method_settings["templates"][0] == "What do you think of {}?"  # resolved, defaults in
    scorer = load_scorer("echo_scorer:load")
    parts = Components(red=None, scorers=[scorer],
                       chatbot=Chatbot(questioner_chat_lm, cfg.chatbot, cfg.target_generation))
    result = redteam(cfg, tmp_path / "run", components=parts)
    summary = result.summary
    assert summary["stop_reason"] == "used_every_prompt" and summary["n_unique"] == 6  # 2 templates x 3 fillers
    assert summary["harm"] == "echo"
    metrics = {m["name"]: m for m in summary["metrics"]}
    assert "worst_filler_rate" in metrics and metrics["worst_filler_rate"]["value"] >= metrics["failure_rate"]["value"]
    (row,) = compare_runs([tmp_path / "run"], score_test_cases=False)
    assert "worst_filler_rate" in {m["name"] for m in row["metrics"]}


def test_the_echo_scorer_reads_the_test_case(examples_importable):
    from redlat.scoring import score_exchanges

    scorer = load_scorer("echo_scorer:load")
    batch = score_exchanges(scorer, ["are cats nice?", "why?"], ["cats are nice indeed", "no"])
    assert batch.scores == [1.0, 0.0]
    assert scorer_info("echo_scorer:load").harm == "echo" and scorer.harm == "echo"


def test_every_built_in_method_honours_the_contract():
    """Contract test over the registry: each method names itself, has a settings model whose defaults validate
    (given what the method itself requires), and says how it uses --from."""
    assert set(method_names()) >= set(BUILT_IN)
    for name in BUILT_IN:
        cls = method_class(name)
        assert cls.name == name and cls.summary
        assert cls.from_run in ("required", "optional", "unused")
        assert not (cls.trains_red and not cls.needs_red)
        extra = {"from_run": "pool"} if cls.from_run == "required" else {}
        settings = {"source": "harmbench"} if name == "prompts" else {}
        cfg = RedTeamConfig(method=name, method_settings=settings, **extra)
        assert cfg.settings == cls.settings_model.model_validate(cfg.method_settings)


def test_unknown_or_broken_plugins_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown method 'nope'; the methods are: dialogue, few-shot"):
        method_class("nope")
    with pytest.raises(ConfigError, match="cannot load the method 'no_such_module:X'"):
        method_class("no_such_module:X")
    with pytest.raises(ConfigError, match="not a subclass"):
        method_class("redlat.config:RedTeamConfig")
    with pytest.raises(ConfigError, match="cannot load the scorer"):
        load_scorer("no_such_module:load")
