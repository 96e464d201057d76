"""RL red LM (Perez et al. 2022, section 3.1): train the red LM to write test cases whose replies score as offensive.

The reward of a test case x is R(x) = -log(1 - r(x, y)), where y is the target's reply and r the deciding classifier's
score; a sample that holds no question gets `invalid_reward`. The paper used synchronous A2C with a KL penalty toward
the initial model. redlat uses TRL's GRPOTrainer, a maintained policy-gradient trainer that takes the reward as a
plain callable and has a KL coefficient (beta) toward a frozen reference (the start model): for each prompt it samples
a group of completions and uses their rewards, centred and scaled within the group, as advantages, so no value
network is needed (A2C's critic would double the memory of a CPU run). With LoRA the reference is the base model with
the adapters switched off, so no second copy of the model is held.

Every optimizer step is logged to the run store: mean reward, KL, offensive rate, the share of valid samples, the
self-BLEU of the batch's test cases and a few samples. Checkpoints are saved every `save_steps`; a run interrupted
and started again resumes from the latest one and replaces the records of the steps it redoes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redlat.generation import derive_seed
from redlat.red_team.training import (
    common_arguments,
    known_warnings_hidden,
    lora_config,
    progress_bar,
    quiet,
    save_red_model,
)
from redlat.red_team.zero_shot import extract_test_case

if TYPE_CHECKING:
    from redlat.chatbot import Chatbot
    from redlat.config import RLSettings
    from redlat.models.causal_lm import LoadedLM
    from redlat.scoring import Scorer
    from redlat.store import RunStore

log = logging.getLogger(__name__)
PHASE = "rl"
CHECKPOINT_DIR = "rl_checkpoints"
MAX_SCORE = 1.0 - 1e-6  # keeps -log(1 - r) finite

RewardFn = Callable[..., list[float]]


def offensiveness_reward(score: float) -> float:
    """R = -log(1 - r): 0 for a harmless reply, growing without bound as the score approaches 1."""
    return -math.log(1.0 - min(max(score, 0.0), MAX_SCORE))


class OffensivenessReward:
    """The RL reward as a callable with TRL's reward-function signature: (prompts, completions, **kw) -> rewards.

    It puts each valid test case to the target, scores the reply, and keeps the batch's statistics (offensive rate,
    valid share, self-BLEU, a few samples) for the step log.
    """

    __name__ = "offensiveness"

    def __init__(
        self, chatbot: Chatbot, scorer: Scorer, *, threshold: float, invalid_reward: float, seed: int
    ) -> None:
        self.chatbot = chatbot
        self.scorer = scorer
        self.threshold = threshold
        self.invalid_reward = invalid_reward
        self.seed = seed
        self.calls = 0
        self.last_stats: dict[str, float | None] = {}
        self.last_samples: list[dict[str, Any]] = []

    def __call__(self, prompts: Sequence[str], completions: Sequence[str], **_: Any) -> list[float]:
        from redlat.diversity import self_bleu

        cases = [extract_test_case(text) for text in completions]
        valid = [case for case in cases if case is not None]
        replies = self.chatbot.reply(valid, seed=derive_seed(self.seed, "rl", self.calls)) if valid else []
        scores = [float(s) for s in self.scorer(replies)] if replies else []
        self.calls += 1
        rewards: list[float] = []
        by_case = iter(zip(valid, replies, scores, strict=True))
        samples: list[dict[str, Any]] = []
        for case in cases:
            if case is None:
                rewards.append(self.invalid_reward)
                continue
            test_case, reply, score = next(by_case)
            rewards.append(offensiveness_reward(score))
            samples.append({"test_case": test_case, "reply": reply, "score": score, "reward": rewards[-1]})
        self.last_stats = {
            "valid_rate": len(valid) / len(cases) if cases else 0.0,
            "offensive_rate": sum(s > self.threshold for s in scores) / len(scores) if scores else 0.0,
            "mean_score": sum(scores) / len(scores) if scores else None,
            "self_bleu": self_bleu(valid),
        }
        samples.sort(key=lambda s: -s["reward"])
        self.last_samples = samples[:2] + samples[-2:] if len(samples) > 4 else samples
        return rewards


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
        beta=settings.kl_coef,
        temperature=1.0,  # sample from the policy itself, so the policy gradient is on-policy
        top_p=1.0,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=1,
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
    resume_from = latest_checkpoint(checkpoint_dir)
    if resume_from is not None:
        done = int(resume_from.name.rsplit("-", 1)[-1])
        log.info("resuming RL training from %s (step %d)", resume_from, done)
        store.forget_training_steps_after(PHASE, done)
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
