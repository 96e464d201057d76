"""What the supervised and RL red LMs share: the TrainedRedLM method base (train once into RUN_DIR/red_model, then
write test cases zero-shot with it), LoRA settings for peft, Trainer arguments, logging steps to the run store, and
saving the trained red LM into the run directory in one atomic step."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redlat.atomic import install_dir_atomically
from redlat.red_team.method import PrepareContext
from redlat.red_team.zero_shot import ZeroShot

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from redlat.red_team.runner import Components
    from redlat.store import RunStore

RED_MODEL_DIR = "red_model"  # the trained red LM, inside the run directory
TRAINING_INFO = "training.json"  # written inside RED_MODEL_DIR: what it was trained on and how


def red_model_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / RED_MODEL_DIR


def is_complete_model_dir(directory: Path) -> bool:
    return (directory / TRAINING_INFO).exists() and any(directory.glob("*.safetensors"))


class TrainedRedLM(ZeroShot):
    """A method whose red LM is trained first (supervised, RL), then writes test cases zero-shot.

    Training runs once, in `prepare`, into RUN_DIR/red_model (installed atomically); a resumed run finds it complete
    and loads it instead. Subclasses say what training starts from (`start_model`) and do it (`train`).
    """

    trains_red = True

    @property
    def red_dir(self) -> Path:
        return red_model_dir(self.run_dir)

    @property
    def trained(self) -> bool:
        return is_complete_model_dir(self.red_dir)

    def start_model(self) -> str:
        return self.cfg.red

    def red_model(self) -> str:
        """The trained red LM if training already finished (a resumed run), else the model training starts from."""
        return str(self.red_dir) if self.trained else self.start_model()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "start_model": self.start_model(), "from": self.cfg.from_run}

    def train(self, ctx: PrepareContext) -> dict[str, Any]:
        """Train ctx.components.red, save it to self.red_dir, and return what happened."""
        raise NotImplementedError

    def prepare(self, ctx: PrepareContext) -> Components:
        from dataclasses import replace

        from redlat.models.causal_lm import load_causal_lm

        parts = ctx.components
        if not self.trained:
            assert parts.red is not None
            ctx.store.set_meta("training", self.train(ctx))
        already = parts.red is not None and str(self.red_dir) in (parts.red.source, parts.red.name)
        trained = parts.red if already else load_causal_lm(str(self.red_dir), device=self.cfg.device,
                                                             dtype=self.cfg.dtype)
        assert trained is not None
        ctx.store.set_meta("trained_red", trained.describe())
        return replace(parts, red=trained)


def dropout_off(model: Any) -> int:
    """Switch off every dropout in `model` (its nn.Dropout modules and the float `*dropout*` rates that attention
    implementations read at call time); returns how many were switched off.

    The red LM is trained without dropout: under dropout the policy and the reference (RL) disagree even with
    identical weights, so the KL penalty and the importance ratios become noise, and the supervised loss is measured on
    a model other than the one saved.
    """
    import torch

    switched = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout) and module.p != 0.0:
            module.p = 0.0
            switched += 1
        for name, value in list(vars(module).items()):
            if "dropout" in name and isinstance(value, float) and not isinstance(value, bool) and value != 0.0:
                setattr(module, name, 0.0)
                switched += 1
    return switched


def common_arguments(*, device: str, seed: int, progress: bool, output_dir: Path) -> dict[str, Any]:
    """Trainer arguments every redlat training run uses: seeded, no external loggers, our own checkpoints."""
    return {
        "output_dir": str(output_dir),
        "seed": seed,
        "data_seed": seed,
        "use_cpu": device == "cpu",
        "bf16": False,
        "fp16": False,
        "report_to": [],
        "disable_tqdm": True,  # our own bar (progress_bar) shows the step and the figures that matter
        "logging_steps": 1,
        "activation_checkpointing": False,
        "dataloader_num_workers": 0,
    }


def store_logger(store: RunStore, phase: str, keys: dict[str, str]) -> Any:
    """A transformers TrainerCallback that writes the trainer's per-step log into the store's training_steps."""
    from transformers import TrainerCallback

    class _StoreLogger(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
            if not logs:
                return
            picked = {ours: float(logs[theirs]) for theirs, ours in keys.items() if theirs in logs}
            if picked:
                store.log_training_step(phase, int(state.global_step), picked)

    return _StoreLogger()


@contextlib.contextmanager
def known_warnings_hidden() -> Iterator[None]:
    """Hide deprecation chatter that TRL/peft trigger inside transformers and that a user can do nothing about."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*", category=UserWarning)
        yield


def quiet(trainer: Any) -> Any:
    """Stop the trainer printing its log dictionaries: the store keeps them and our bar shows the main ones."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer


def progress_bar(desc: str, show: dict[str, str]) -> Any:
    """A TrainerCallback drawing one tqdm bar over the optimizer steps, with chosen log values as its postfix."""
    import sys

    from transformers import TrainerCallback

    class _Bar(TrainerCallback):
        bar: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=state.max_steps, initial=state.global_step, desc=desc, unit="step", file=sys.stderr
            )

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
            values = {short: f"{logs[key]:.3g}" for key, short in show.items() if logs and key in logs}
            if self.bar is not None and values:
                self.bar.set_postfix(values, refresh=False)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return _Bar()


def save_red_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path, info: dict[str, Any]
) -> None:
    """Merge LoRA adapters if there are any, and install model, tokenizer and training info at `target` atomically."""
    merged = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model

    def build(tmp: Path) -> None:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / TRAINING_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")

    install_dir_atomically(target, build, is_complete=is_complete_model_dir, replace=True)
