"""Every `redlat experiment`, one `Experiment` entry each: its name, config model, --quick preset and the module that
runs it. The module provides two functions: one that runs (or resumes) the sweep and returns its finished, open run
store, and `layout(config)`, how its results are shown (experiments/layout.py). What every experiment does after its
sweep (the summary, the figures, summary.json) is experiments/commands.py's, once for all; the CLI, the report and
`redlat summary` find an experiment here by name or by the command stored with its run.

Modules are imported when an entry is used, so listing the experiments costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redlat.errors import ConfigError

if TYPE_CHECKING:
    from redlat.experiments.layout import Layout
    from redlat.store import RunStore


@dataclass(frozen=True)
class Experiment:
    name: str  # `redlat experiment NAME`
    heading: str  # what the report and the docs call it
    config: str  # its config model, in redlat.config
    quick: str  # its --quick preset, in redlat.config
    module: str  # the module that runs it
    open_run: str = "open_run"  # (cfg, run_dir, *, progress, bar, **extra) -> the finished run store, open
    layout_function: str = "layout"  # (config dict) -> Layout
    transfer_matrix: bool = False  # its summary holds the transfer matrix (robust accuracy under each eval attack)

    @property
    def command(self) -> str:
        """The command stored with a run of this experiment."""
        return f"experiment {self.name}"

    def config_model(self) -> type:
        return getattr(import_module("redlat.config"), self.config)

    def quick_preset(self) -> dict[str, Any]:
        return dict(getattr(import_module("redlat.config"), self.quick))

    def layout(self, config: dict[str, Any]) -> Layout:
        return getattr(import_module(self.module), self.layout_function)(config)

    def run_store(self, cfg: Any, run_dir: Path, **kwargs: Any) -> RunStore:
        return getattr(import_module(self.module), self.open_run)(cfg, run_dir, **kwargs)

    def default_run_dir(self, cfg: Any, root: Path = Path("runs")) -> Path:
        return root / f"{self.name}-{cfg.fingerprint()}"


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("trojans-vision", "Trojans and defences (images)", "TrojansVisionConfig", "QUICK_TROJANS_VISION",
               "redlat.experiments.trojans_vision", transfer_matrix=True),
    Experiment("transfer", "Transfer between perturbation types", "TransferConfig", "QUICK_TRANSFER",
               "redlat.experiments.trojans_vision", open_run="open_transfer_run", layout_function="transfer_layout",
               transfer_matrix=True),
    Experiment("trojans-text", "Trojans and defences (text classifier)", "TrojansTextConfig", "QUICK_TROJANS_TEXT",
               "redlat.experiments.trojans_text"),
    Experiment("trojans-lm", "Trojans and defences (chat model)", "TrojansLMConfig", "QUICK_TROJANS_LM",
               "redlat.experiments.trojans_lm"),
    Experiment("harden-loop", "Hardening, before and after", "HardenLoopConfig", "QUICK_HARDEN_LOOP",
               "redlat.experiments.harden_loop"),
)


def experiment(name: str) -> Experiment:
    """The experiment called `name` (a ConfigError naming the others if there is none)."""
    for entry in EXPERIMENTS:
        if entry.name == name:
            return entry
    raise ConfigError(f"no experiment {name!r}; the experiments are: {', '.join(e.name for e in EXPERIMENTS)}")


def for_command(command: str) -> Experiment:
    """The experiment a run's stored command names ("experiment trojans-lm")."""
    return experiment(command.removeprefix("experiment "))
