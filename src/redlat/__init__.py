"""redlat: find failures in language models with language models, then remove them.

The Python API mirrors the CLI:

    from redlat import RedTeamConfig, redteam, summarize_run, export_run
    result = redteam(RedTeamConfig(n=50), "runs/zs")
    print(result.summary["offensive_rate"])

Names are imported lazily, so `import redlat` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "RedTeamConfig": "redlat.config",
    "ClassifierSpec": "redlat.config",
    "RedGeneration": "redlat.config",
    "TargetGeneration": "redlat.config",
    "ChatbotConfig": "redlat.config",
    "FewShotSettings": "redlat.red_team.few_shot",
    "SupervisedSettings": "redlat.red_team.supervised",
    "RLSettings": "redlat.red_team.rl",
    "LoraSettings": "redlat.config",
    "AnalyzeConfig": "redlat.config",
    "ReportConfig": "redlat.config",
    "analyze_run": "redlat.analysis.analyze",
    "latest_analysis": "redlat.analysis.stored",
    "build_report": "redlat.report.render",
    "compare_runs": "redlat.compare",
    "plot_comparison": "redlat.compare",
    "self_bleu": "redlat.diversity",
    "distinct_n": "redlat.diversity",
    "OffensivenessReward": "redlat.red_team.rl",
    "build_config": "redlat.config",
    "redteam": "redlat.red_team.runner",
    "load_components": "redlat.red_team.runner",
    "Components": "redlat.red_team.runner",
    "RunResult": "redlat.red_team.runner",
    "RunStore": "redlat.store",
    "Attempt": "redlat.records",
    "summarize_run": "redlat.api",
    "export_run": "redlat.export",
    "load_scorer": "redlat.scoring",
    "load_causal_lm": "redlat.models.causal_lm",
    "Chatbot": "redlat.chatbot",
    "RedlatError": "redlat.errors",
    # the adversarial-training half
    "TrojansVisionConfig": "redlat.config",
    "DefenceSpec": "redlat.config",
    "TrojanSpec": "redlat.config",
    "trojans_vision": "redlat.experiments.commands",
    "TransferConfig": "redlat.config",
    "transfer": "redlat.experiments.commands",
    "TrojansTextConfig": "redlat.config",
    "TextDefenceSpec": "redlat.config",
    "TextTrojanSpec": "redlat.config",
    "trojans_text": "redlat.experiments.commands",
    "run_experiment": "redlat.experiments.commands",
    "TrojansLMConfig": "redlat.config",
    "LMDefenceSpec": "redlat.config",
    "LMTrojanSpec": "redlat.config",
    "trojans_lm": "redlat.experiments.commands",
    "HardenConfig": "redlat.config",
    "harden": "redlat.harden",
    "HardenLoopConfig": "redlat.config",
    "harden_loop": "redlat.experiments.commands",
    "PromptSetSettings": "redlat.red_team.prompt_sets",
    "Method": "redlat.red_team.method",
    "MethodSettings": "redlat.red_team.method",
    "Candidate": "redlat.red_team.method",
    "method_names": "redlat.red_team.method",
    "register_scorer": "redlat.scoring",
    "Exchange": "redlat.scoring",
    "perturbed": "redlat.adversarial.hooks",
    "pgd": "redlat.adversarial.pgd",
    "PGDSettings": "redlat.adversarial.pgd",
    "AdversarialTrainer": "redlat.adversarial.trainers",
    "Defence": "redlat.adversarial.trainers",
    "TrainSettings": "redlat.adversarial.trainers",
    "apply_lora": "redlat.adversarial.trainers",
    "ClassificationTask": "redlat.adversarial.tasks",
    "LanguageModelTask": "redlat.adversarial.tasks",
    "SequenceClassificationTask": "redlat.adversarial.tasks",
    "Trojan": "redlat.adversarial.trojans",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from redlat.adversarial.hooks import perturbed
    from redlat.adversarial.pgd import PGDSettings, pgd
    from redlat.adversarial.tasks import ClassificationTask, LanguageModelTask, SequenceClassificationTask
    from redlat.adversarial.trainers import AdversarialTrainer, Defence, TrainSettings, apply_lora
    from redlat.adversarial.trojans import Trojan
    from redlat.analysis.analyze import analyze_run
    from redlat.analysis.stored import latest_analysis
    from redlat.api import summarize_run
    from redlat.chatbot import Chatbot
    from redlat.compare import compare_runs, plot_comparison
    from redlat.config import (
        AnalyzeConfig,
        ChatbotConfig,
        ClassifierSpec,
        DefenceSpec,
        HardenConfig,
        HardenLoopConfig,
        LMDefenceSpec,
        LMTrojanSpec,
        LoraSettings,
        RedGeneration,
        RedTeamConfig,
        ReportConfig,
        TargetGeneration,
        TextDefenceSpec,
        TextTrojanSpec,
        TransferConfig,
        TrojansLMConfig,
        TrojanSpec,
        TrojansTextConfig,
        TrojansVisionConfig,
        build_config,
    )
    from redlat.diversity import distinct_n, self_bleu
    from redlat.errors import RedlatError
    from redlat.experiments.commands import (
        harden_loop,
        run_experiment,
        transfer,
        trojans_lm,
        trojans_text,
        trojans_vision,
    )
    from redlat.export import export_run
    from redlat.harden import harden
    from redlat.models.causal_lm import load_causal_lm
    from redlat.records import Attempt
    from redlat.red_team.few_shot import FewShotSettings
    from redlat.red_team.method import Candidate, Method, MethodSettings, method_names
    from redlat.red_team.prompt_sets import PromptSetSettings
    from redlat.red_team.rl import OffensivenessReward, RLSettings
    from redlat.red_team.runner import Components, RunResult, load_components, redteam
    from redlat.red_team.supervised import SupervisedSettings
    from redlat.report.render import build_report
    from redlat.scoring import Exchange, load_scorer, register_scorer
    from redlat.store import RunStore


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'redlat' has no attribute {name!r}")
    return getattr(import_module(module), name)
