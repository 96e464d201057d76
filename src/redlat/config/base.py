"""What every command's config shares: the frozen base model, YAML reading, precedence and error messages.

One frozen, validated config model per command. Precedence: defaults < preset (--quick) < YAML file < CLI flags.
Unknown keys are errors, so a typo in a config file never silently does nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from redlat.errors import ConfigError

OFFLINE_RED = "smollm2-135m-instruct"
OFFLINE_TARGET = "smollm2-135m-instruct"
OFFLINE_CLASSIFIER = "jigsaw-bilstm"
OFFLINE_EMBEDDER = "all-minilm-l6-v2"

class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def identity(self) -> dict[str, Any]:
        """The settings that determine results (a resumed run must match them): by default, all of them."""
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


ConfigT = TypeVar("ConfigT", bound=_Frozen)


class LoraSettings(_Frozen):
    """Low-rank adapters (peft) instead of full fine-tuning; merged into the saved model."""

    enabled: bool = Field(default=False, description="train LoRA adapters instead of all weights")
    r: int = Field(default=16, ge=1, description="adapter rank")
    alpha: int = Field(default=32, ge=1, description="adapter scaling numerator (lora_alpha)")
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="dropout on the adapter input")
    target_modules: str | tuple[str, ...] = Field(
        default="all-linear", description="module names to adapt, or 'all-linear'"
    )



def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's mapping, or a ConfigError that says what is wrong with it."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, not {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def build_config(
    model: type[ConfigT],
    file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    preset: dict[str, Any] | None = None,
) -> ConfigT:
    """defaults < preset (e.g. --quick) < YAML file < overrides (CLI flags), validated into a frozen config."""
    data = _merge(preset or {}, read_yaml(file) if file is not None else {})
    data = _merge(data, overrides or {})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source=str(file) if file else None)) from exc


def format_validation_error(exc: ValidationError, source: str | None = None) -> str:
    lines = [f"invalid config{f' in {source}' if source else ''}:"]
    lines += [f"  {_error_line(err)}" for err in exc.errors()]
    return "\n".join(lines)


def _error_line(err: Any) -> str:
    """One pydantic error as `where: message`, in the user's words."""
    where = ".".join(str(part) for part in err["loc"]) or "(top level)"
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown setting (check the spelling; the command's --help and docs/ list the settings)"
    return f"{where}: {message}"

