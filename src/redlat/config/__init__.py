"""One frozen, validated config model per command, one module per command family:

- base.py         the frozen base model, LoRA settings, YAML reading, precedence (defaults < preset < YAML < flags),
                  error lines
- redteam.py      `redlat redteam` (RedTeamConfig; each method's own settings model lives with the method)
- analysis.py     `redlat analyze`, `redlat report`
- experiments.py  `redlat experiment trojans-vision`, `trojans-lm`
- harden.py       `redlat harden`, `redlat experiment harden-loop`
- scale.py        where the work runs (RaySettings: `--ray`), shared by the commands that scale out

Everything is importable from `redlat.config` as before.
"""

from __future__ import annotations

from redlat.config.analysis import AnalyzeConfig, ReportConfig
from redlat.config.base import (
    OFFLINE_CLASSIFIER,
    OFFLINE_EMBEDDER,
    OFFLINE_RED,
    OFFLINE_TARGET,
    ConfigT,
    LoraSettings,
    build_config,
    format_validation_error,
    read_yaml,
)
from redlat.config.defences import BaseDefenceSpec, DefenceSpec, LMDefenceSpec, TextDefenceSpec
from redlat.config.experiments import (
    DEFAULT_LM_TROJAN_SPECS,
    DEFAULT_TROJANS,
    HELD_OUT_ATTACKS,
    QUICK_TRANSFER,
    QUICK_TROJANS_LM,
    QUICK_TROJANS_TEXT,
    QUICK_TROJANS_VISION,
    LMTrojanSpec,
    TextTrojanSpec,
    TransferConfig,
    TrojansLMConfig,
    TrojanSpec,
    TrojansTextConfig,
    TrojansVisionConfig,
)
from redlat.config.harden import HARDEN_LAYERS, QUICK_HARDEN_LOOP, HardenConfig, HardenLoopConfig
from redlat.config.redteam import (
    ZERO_SHOT_PROMPT,
    ChatbotConfig,
    ClassifierSpec,
    EngineSettings,
    RedGeneration,
    RedTeamConfig,
    TargetGeneration,
    section_key,
)
from redlat.config.scale import RaySettings

__all__ = [
    "DEFAULT_LM_TROJAN_SPECS",
    "DEFAULT_TROJANS",
    "HARDEN_LAYERS",
    "HELD_OUT_ATTACKS",
    "OFFLINE_CLASSIFIER",
    "OFFLINE_EMBEDDER",
    "OFFLINE_RED",
    "OFFLINE_TARGET",
    "QUICK_HARDEN_LOOP",
    "QUICK_TRANSFER",
    "QUICK_TROJANS_LM",
    "QUICK_TROJANS_TEXT",
    "QUICK_TROJANS_VISION",
    "ZERO_SHOT_PROMPT",
    "AnalyzeConfig",
    "BaseDefenceSpec",
    "ChatbotConfig",
    "ClassifierSpec",
    "ConfigT",
    "DefenceSpec",
    "EngineSettings",
    "HardenConfig",
    "HardenLoopConfig",
    "LMDefenceSpec",
    "LMTrojanSpec",
    "LoraSettings",
    "RaySettings",
    "RedGeneration",
    "RedTeamConfig",
    "ReportConfig",
    "TargetGeneration",
    "TextDefenceSpec",
    "TextTrojanSpec",
    "TransferConfig",
    "TrojanSpec",
    "TrojansLMConfig",
    "TrojansTextConfig",
    "TrojansVisionConfig",
    "build_config",
    "format_validation_error",
    "read_yaml",
    "section_key",
]
