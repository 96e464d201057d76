"""RL red LM (Perez et al. 2022, section 3.1): train the red LM to write test cases whose replies score as offensive.

The reward of a test case x is R(x) = -log(1 - r(x, y)), where y is the target's reply and r the deciding classifier's
score; a sample that holds no question gets `invalid_reward`. The paper used synchronous A2C with a KL penalty toward
the initial model. redlat uses TRL's GRPOTrainer, a maintained policy-gradient trainer that takes the reward as a
plain callable and has a KL coefficient (beta) toward a frozen reference (the start model): for each prompt it samples
a group of completions and uses their rewards, centred (and by default scaled) within the group, as advantages, so no
value network is needed (A2C's critic would double the memory of a CPU run). With LoRA the reference is the base model
with the adapters switched off, so no second copy of the model is held. The red LM trains without dropout, so policy
and reference agree exactly where their weights do.

Presets (`rl.preset`):
- `default`: beta = 0.1 per sampled token, advantages scaled by the group's spread (GRPO's own default).
- `perez2022`: the paper's KL strength. Its loss is alpha * KL + (1 - alpha) * policy loss with alpha 0.3 to 0.4;
  dividing by (1 - alpha) gives GRPO's form, policy loss + beta * KL, with beta = alpha / (1 - alpha): alpha = 0.35
  gives beta = 0.538. Advantages stay on the reward's own scale (R minus the group mean, a baseline as A2C's value
  estimate is), not divided by the group's spread, so beta weighs the KL against the reward as alpha did. GRPO's KL
  is the k3 estimate on the sampled tokens, whose expectation is the KL of the whole next-token distribution that the
  paper penalised.
- `curiosity`: `perez2022` plus the novelty terms of Hong et al. (2024), see red_team/novelty.py.

Every optimizer step is logged to the run store: mean reward, KL, offensive rate, the share of valid samples, the
self-BLEU of the batch's test cases, each novelty term, and the batch's samples. Checkpoints are saved every
`save_steps`; a run interrupted and started again resumes from the latest one and replaces the records of the steps
it redoes. Every seed derives from the run seed and the optimizer step, so the resumed run is the uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from redlat.config.base import LoraSettings
from redlat.errors import ConfigError
from redlat.generation import derive_seed
from redlat.lora import lora_config
from redlat.red_team.method import MethodSettings, PrepareContext
from redlat.red_team.novelty import Novelty, NoveltySettings, mean_token_nll
from redlat.red_team.training import (
    TrainedRedLM,
    common_arguments,
    dropout_off,
    known_warnings_hidden,
    progress_bar,
    quiet,
    save_red_model,
)
from redlat.red_team.zero_shot import extract_test_case
from redlat.store import DB_NAME, RunStore

if TYPE_CHECKING:
    from redlat.chatbot import Chatbot
    from redlat.models.causal_lm import LoadedLM
    from redlat.scoring import Scorer

log = logging.getLogger(__name__)
PHASE = "rl"
CHECKPOINT_DIR = "rl_checkpoints"
MAX_SCORE = 1.0 - 1e-6  # keeps -log(1 - r) finite

RewardFn = Callable[..., list[float]]

PEREZ_ALPHA = 0.35  # the middle of the paper's 0.3 to 0.4
RL_PRESETS: dict[str, dict[str, Any]] = {
    "default": {"kl_coef": 0.1, "scale_rewards": "group"},
    "perez2022": {"kl_alpha": PEREZ_ALPHA, "scale_rewards": "none"},
    "curiosity": {"kl_alpha": PEREZ_ALPHA, "scale_rewards": "none",
                  "novelty": {"bleu": 1.0, "embedding": 1.0, "entropy": 0.01}},
}


class RLSettings(MethodSettings):
    """RL red LM: policy gradient (TRL's GRPO) on R = -log(1 - r(x, y)), with a KL penalty to the start model and,
    optionally, novelty terms. A preset fills every setting it names that is not given explicitly."""

    preset: Literal["default", "perez2022", "curiosity"] = Field(
        default="default", description="default | perez2022 (the paper's KL) | curiosity (perez2022 + novelty)"
    )
    steps: int = Field(default=100, ge=1, description="optimizer steps")
    kl_coef: float | None = Field(
        default=None, ge=0.0, description="beta: KL penalty per sampled token toward the start model [preset]"
    )
    kl_alpha: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="the paper's alpha instead of beta: beta = alpha / (1 - alpha)"
    )
    scale_rewards: Literal["group", "none"] = Field(
        default="group", description="group: advantages divided by the group's spread; none: on the reward's scale"
    )
    novelty: NoveltySettings = Field(default_factory=NoveltySettings, description="curiosity terms (0: off)")
    learning_rate: float = Field(default=1e-4, gt=0.0, description="learning rate (constant; LoRA by default)")
    batch_size: int = Field(default=16, ge=2, description="test cases sampled per step")
    group_size: int = Field(default=8, ge=2, description="samples per group whose rewards are compared")
    max_new_tokens: int = Field(default=24, ge=1, description="tokens per sampled test case")
    invalid_reward: float = Field(default=-1.0, description="reward of a sample that holds no question")
    save_steps: int = Field(default=10, ge=1, description="checkpoint every this many steps")
    lora: LoraSettings = LoraSettings(enabled=True, r=16, alpha=32)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        preset = RL_PRESETS.get(str(data.get("preset", "default")))
        if preset is None:
            return data  # the Literal check names the presets
        given = dict(data)
        if given.get("kl_coef") is not None or given.get("kl_alpha") is not None:  # one KL setting given: no other
            preset = {k: v for k, v in preset.items() if k not in ("kl_coef", "kl_alpha")}
        out = {**preset, **{k: v for k, v in given.items() if v is not None}}
        if isinstance(preset.get("novelty"), dict) and isinstance(given.get("novelty"), dict):
            out["novelty"] = {**preset["novelty"], **given["novelty"]}
        return out

    @model_validator(mode="after")
    def _consistent(self) -> RLSettings:
        if self.batch_size % self.group_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of group_size ({self.group_size})")
        if self.kl_alpha is not None:
            beta = self.kl_alpha / (1.0 - self.kl_alpha)
            if self.kl_coef is not None and not math.isclose(self.kl_coef, beta, rel_tol=1e-9):
                raise ValueError("give the KL strength once: kl_coef (beta) or kl_alpha (the paper's alpha)")
            object.__setattr__(self, "kl_coef", beta)
        elif self.kl_coef is None:
            object.__setattr__(self, "kl_coef", RL_PRESETS["default"]["kl_coef"])
        return self

    @property
    def beta(self) -> float:
        assert self.kl_coef is not None  # resolved by the validator
        return self.kl_coef


def offensiveness_reward(score: float) -> float:
    """R = -log(1 - r): 0 for a harmless reply, growing without bound as the score approaches 1."""
    return -math.log(1.0 - min(max(score, 0.0), MAX_SCORE))


class OffensivenessReward:
    """The RL reward as a callable with TRL's reward-function signature: (prompts, completions, **kw) -> rewards.

    It puts each valid test case to the target, scores the reply, adds the novelty terms that are switched on, and
    keeps the batch's statistics (offensive rate, valid share, self-BLEU, each term) and samples for the step log.
    """

    __name__ = "offensiveness"

    def __init__(
        self,
        chatbot: Chatbot,
        scorer: Scorer,
        *,
        threshold: float,
        invalid_reward: float,
        seed: int,
        novelty: Novelty | None = None,
    ) -> None:
        self.chatbot = chatbot
        self.scorer = scorer
        self.threshold = threshold
        self.invalid_reward = invalid_reward
        self.seed = seed
        self.novelty = novelty
        self.policy: tuple[Any, list[int]] | None = None  # (red LM, prompt ids) for the entropy term; set by train_rl
        self.calls = 0
        self.last_stats: dict[str, float | None] = {}
        self.last_samples: list[dict[str, Any]] = []

    def reply_seed(self, trainer_state: Any) -> int:
        """The target's seed for this batch: from the optimizer step the batch is for, so a run resumed from a
        checkpoint draws the replies an uninterrupted run would (a per-process call count restarts at 0)."""
        step = trainer_state.global_step if trainer_state is not None else self.calls
        return derive_seed(self.seed, "rl", step)

    def restore(self, steps: Sequence[dict[str, Any]]) -> None:
        """Rebuild the novelty history from the stored steps a resumed run keeps: each step's cases added as that
        step added them (one batch, in the order drawn), so the embeddings, and the rewards after them, are the
        uninterrupted run's to the last bit (one batch of everything rounds differently)."""
        if self.novelty is not None:
            self.novelty.restore([[s["test_case"] for s in step.get("samples", [])] for step in steps])

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **kwargs: Any) -> list[float]:
        from redlat.diversity import self_bleu
        from redlat.scoring.base import score_exchanges

        cases = [extract_test_case(text) for text in completions]
        valid = [case for case in cases if case is not None]
        replies = self.chatbot.reply(valid, seed=self.reply_seed(kwargs.get("trainer_state"))) if valid else []
        scores = [float(s) for s in score_exchanges(self.scorer, valid, replies).scores] if replies else []
        self.calls += 1
        terms = self._novelty_terms(cases, valid, kwargs.get("completion_ids"))
        rewards: list[float] = []
        by_case = iter(range(len(valid)))
        samples: list[dict[str, Any]] = []
        for case in cases:
            if case is None:
                rewards.append(self.invalid_reward)
                continue
            j = next(by_case)
            sample = {"test_case": case, "reply": replies[j], "score": scores[j],
                      "harm_reward": offensiveness_reward(scores[j])}
            bonus = 0.0
            for name, (weight, values) in terms.items():
                sample[name] = values[j]
                bonus += weight * values[j]
            sample["reward"] = sample["harm_reward"] + bonus
            rewards.append(sample["reward"])
            samples.append(sample)
        self.last_stats = {
            "valid_rate": len(valid) / len(cases) if cases else 0.0,
            "offensive_rate": sum(s > self.threshold for s in scores) / len(scores) if scores else 0.0,
            "mean_score": sum(scores) / len(scores) if scores else None,
            "mean_harm_reward": _mean([s["harm_reward"] for s in samples]),
            "self_bleu": self_bleu(valid),
            **{f"mean_{name}": _mean(values) for name, (_, values) in terms.items()},
        }
        if self.novelty is not None:
            self.novelty.add(valid)
        self.last_samples = samples  # in the order drawn: a resumed run rebuilds the history from them
        return rewards

    def _novelty_terms(
        self, cases: list[str | None], valid: list[str], completion_ids: Any
    ) -> dict[str, tuple[float, list[float]]]:
        """name -> (coefficient, value per valid case) for each term that is switched on."""
        if self.novelty is None or not valid:
            return {}
        settings = self.novelty.settings
        weights = {"novelty_bleu": settings.bleu, "novelty_embedding": settings.embedding}
        out = {name: (weights[name], values) for name, values in self.novelty.terms(valid).items()}
        if settings.entropy > 0 and self.policy is not None and completion_ids is not None:
            model, prompt_ids = self.policy
            ids = [list(c) for c, case in zip(completion_ids, cases, strict=True) if case is not None]
            out["entropy"] = (settings.entropy, mean_token_nll(model, prompt_ids, ids))
        return out


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    if not checkpoint_dir.is_dir():
        return None
    found = get_last_checkpoint(str(checkpoint_dir))
    return Path(found) if found else None


@known_warnings_hidden()
def train_rl(
    start: LoadedLM,
    reward: RewardFn,
    settings: RLSettings,
    *,
    prompt: str,
    out_dir: Path,
    checkpoint_dir: Path,
    store: RunStore,
    seed: int,
    progress: bool = True,
    start_name: str | None = None,
) -> dict[str, Any]:
    """Train `start` with GRPO on `reward` for settings.steps steps (resuming from a checkpoint if there is one),
    save the result to `out_dir`, and return what happened."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    begun = time.perf_counter()
    model, tokenizer = start.model, start.tokenizer
    dropout_off(model)  # else the KL to the reference (adapters off) is dropout noise, non-zero from step 1
    eos_before = model.generation_config.eos_token_id
    # A test case is one list item: sampling ends at the first newline, as in zero-shot generation.
    newline_ids = start.newline_mask().nonzero().flatten().tolist()
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, *newline_ids]
    padding_side = tokenizer.padding_side
    args = GRPOConfig(
        **common_arguments(device=str(start.device.type), seed=seed, progress=progress, output_dir=checkpoint_dir),
        max_steps=settings.steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        per_device_train_batch_size=settings.batch_size,
        generation_batch_size=settings.batch_size,
        num_generations=settings.group_size,
        max_completion_length=settings.max_new_tokens,
        beta=settings.beta,
        scale_rewards=settings.scale_rewards,
        temperature=1.0,  # sample from the policy itself, so the policy gradient is on-policy
        top_p=1.0,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=1,
        disable_dropout=True,
    )
    prompts = Dataset.from_dict({"prompt": [prompt] * max(settings.batch_size, 64)})
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=args,
        train_dataset=prompts,
        processing_class=tokenizer,
        peft_config=lora_config(settings.lora),
        callbacks=[
            _rl_logger(store, reward),
            *([progress_bar("RL training", {"reward": "reward", "kl": "kl"})] if progress else []),
        ],
    )
    quiet(trainer)
    if hasattr(reward, "policy"):  # the entropy term scores samples under the policy being trained
        reward.policy = (trainer.model, tokenizer(prompt, add_special_tokens=False)["input_ids"])
    resume_from = latest_checkpoint(checkpoint_dir)
    done = 0
    if resume_from is not None:
        done = int(resume_from.name.rsplit("-", 1)[-1])
        log.info("resuming RL training from %s (step %d)", resume_from, done)
    store.forget_training_steps_after(PHASE, done)  # steps past the checkpoint are redone (none on a fresh start)
    if hasattr(reward, "restore"):
        reward.restore(store.training_steps(PHASE))
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    model.generation_config.eos_token_id = eos_before
    tokenizer.padding_side = padding_side
    curve = [row["mean_reward"] for row in store.training_steps(PHASE) if "mean_reward" in row]
    info = {
        "method": PHASE,
        "algorithm": "GRPO (TRL)",
        "start_model": start_name or start.name,
        "steps": int(trainer.state.global_step),
        "resumed_from_step": int(resume_from.name.rsplit("-", 1)[-1]) if resume_from else None,
        "settings": settings.model_dump(mode="json"),
        "mean_reward_first_10": _mean(curve[:10]),
        "mean_reward_last_10": _mean(curve[-10:]),
        "seconds_this_process": time.perf_counter() - begun,
    }
    save_red_model(trainer.model, tokenizer, out_dir, info)
    return info


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _rl_logger(store: RunStore, reward: RewardFn) -> Any:
    """Per step: the trainer's log (reward, KL, loss, ...) merged with the reward's own batch statistics."""
    from transformers import TrainerCallback

    keys = {
        "reward": "mean_reward",
        "reward_std": "reward_std",
        "kl": "kl",
        "loss": "loss",
        "entropy": "entropy",
        "completions/mean_length": "mean_length_tokens",
        "learning_rate": "learning_rate",
    }

    class _RLLogger(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kw: Any) -> None:
            if not logs or "reward" not in logs:
                return
            metrics: dict[str, Any] = {ours: float(logs[theirs]) for theirs, ours in keys.items() if theirs in logs}
            metrics.update(getattr(reward, "last_stats", {}))
            store.log_training_step(PHASE, int(state.global_step), metrics, getattr(reward, "last_samples", []))

    return _RLLogger()


class ReinforcementLearning(TrainedRedLM):
    name = "rl"
    summary = "train the red LM with GRPO on the harm reward (presets: default, perez2022, curiosity)"
    settings_model = RLSettings
    from_run = "optional"
    from_help = "the run whose trained red LM to start from (a supervised run), or whose red LM"
    metrics = ("rl_reward_first_10", "rl_reward_last_10")

    def start_model(self) -> str:
        return rl_start_model(self.cfg.from_run, self.cfg.red)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "preset": self.settings.preset, "beta": self.settings.beta}

    def train(self, ctx: PrepareContext) -> dict[str, Any]:
        parts = ctx.components
        assert parts.red is not None
        novelty = None
        if self.settings.novelty.active:
            novelty = Novelty(self.settings.novelty, device=str(parts.red.device))
        reward = OffensivenessReward(parts.chatbot, parts.scorers[0], threshold=self.cfg.threshold,
                                     invalid_reward=self.settings.invalid_reward, seed=self.cfg.seed, novelty=novelty)
        return train_rl(parts.red, reward, self.settings, prompt=self.cfg.red_generation.prompt, out_dir=self.red_dir,
                        checkpoint_dir=self.run_dir / CHECKPOINT_DIR, store=ctx.store, seed=self.cfg.seed,
                        progress=ctx.progress, start_name=self.start_model())


def rl_start_model(from_run: str | None, red: str) -> str:
    """--from a supervised (or RL) run: its trained red LM; --from a run without one: that run's red LM;
    --from a model directory: that model; no --from: --red."""
    from redlat.red_team.training import is_complete_model_dir, red_model_dir

    if from_run is None:
        return red
    source = Path(from_run)
    if is_complete_model_dir(red_model_dir(source)):
        return str(red_model_dir(source))
    if (source / DB_NAME).exists():
        with RunStore(source) as store:
            return str(store.run_info().config["red"])
    if (source / "config.json").exists() and not (source / DB_NAME).exists() and any(source.glob("*.safetensors")):
        return str(source)
    raise ConfigError(
        f"--from {source}: not a redlat run directory (no {DB_NAME}) nor a model directory; give a supervised run "
        "to start RL from its trained red LM, or leave out --from and name the start model with --red"
    )
