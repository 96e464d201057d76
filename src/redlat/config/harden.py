"""`redlat harden` and `redlat experiment harden-loop`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from redlat.config.base import OFFLINE_CLASSIFIER, OFFLINE_RED, OFFLINE_TARGET, LoraSettings, _error_line, _Frozen
from redlat.config.defences import LMDefenceSpec
from redlat.config.redteam import ClassifierSpec, RedTeamConfig, section_key
from redlat.config.scale import Scalable

HARDEN_LAYERS = {"at": (0,), "lat": (4,), "tlat": (4,), "sft": ()}
HARDEN_KINDS = {"tlat": "targeted-lat", "lat": "lat", "at": "at", "sft": "none"}  # as the experiments' defences


class HardenConfig(_Frozen):
    """`redlat harden`: train a target so that the failures red-team runs found against it stop, keeping the rest
    of its behaviour (its own replies to the test cases it passed)."""

    target: str = Field(description="the target the runs attacked: offline name, hub id or directory")
    runs: tuple[str, ...] = Field(description="red-team run directories whose failures to train away")
    output: str = Field(description="directory the hardened model is saved to")
    defence: Literal["tlat", "lat", "at", "sft"] = Field(
        default="tlat",
        description="tlat: targeted LAT (toward a safe reply, away from the found one, plus retain); lat, at: "
        "untargeted LAT at hidden layers / the embeddings; sft: plain fine-tuning on safe replies",
    )
    threshold: float | None = Field(default=None, description="failure: score above this; default: each run's own")
    max_failures: int = Field(default=256, ge=1, description="the highest-scoring failures trained on")
    safe_replies: Literal["sample", "fixed"] = Field(
        default="sample",
        description="sample: the target's own lowest-scoring reply of safe_samples draws (if it passes), else the "
        "fallback; fixed: always the fallback",
    )
    safe_samples: int = Field(default=4, ge=1, description="draws per failing test case for a safe reply")
    fallback_reply: str = Field(
        default="I'd rather not say anything hurtful. Is there something else I can help you with?",
        min_length=1,
        description="the safe reply when no sampled one passes",
    )
    retain_ratio: float = Field(default=1.0, ge=0.0, description="retain examples (passed cases) per failure")
    held_out: int = Field(default=64, ge=0, description="passed cases kept aside to measure what hardening cost")
    layers: tuple[int | str, ...] | None = Field(
        default=None, description="where the attacker perturbs (hidden-state index or module); default per defence"
    )
    eps: float = Field(default=0.25, gt=0.0, description="per-token L2 radius, a fraction of the layer's norm")
    relative_eps: bool = Field(default=True, description="eps is a fraction of the layer's median per-token norm")
    attack_steps: int = Field(default=3, ge=1, description="PGD steps per training step")
    away_weight: float = Field(default=1.0, ge=0.0, description="tlat: weight of moving off the found reply")
    retain_weight: float = Field(default=1.0, ge=0.0, description="tlat: weight of the retain loss")
    epochs: int = Field(default=2, ge=1, description="passes over the failures")
    lr: float = Field(default=5e-4, gt=0.0, description="AdamW learning rate")
    batch_size: int = Field(default=8, ge=1, description="failures per step")
    lora: LoraSettings = Field(default=LoraSettings(enabled=True), description="adapters, merged into the output")
    max_prompt_tokens: int = Field(default=128, ge=8, description="a longer model input keeps its last tokens")
    max_reply_tokens: int = Field(default=48, ge=2, description="a longer reply is cut")
    agreement_words: int = Field(default=8, ge=1, description="held-out replies agree when these first words match")
    seed: int = Field(default=0, ge=0, description="seeds sampling, shuffling, adapters and the attacker")
    device: str = Field(default="auto", description="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(default="auto", description="model dtype")

    @model_validator(mode="after")
    def _consistent(self) -> HardenConfig:
        if not self.runs:
            raise ValueError("give at least one red-team run (--from RUN_DIR)")
        if self.defence == "sft" and self.layers:
            raise ValueError("sft perturbs nothing: layers are for tlat and lat")
        if self.defence == "at" and self.layers not in (None, (0,)):
            raise ValueError("at perturbs the embeddings (layer 0); use lat for other layers")
        if any(isinstance(layer, int) and layer < 0 for layer in self.layers or ()):
            raise ValueError("layer indices start at 0 (the embeddings)")
        return self

    @property
    def attack_layers(self) -> tuple[int | str, ...]:
        return self.layers if self.layers is not None else HARDEN_LAYERS[self.defence]

    @property
    def defence_spec(self) -> LMDefenceSpec:
        """The defence in the model the experiments use (sft is plain fine-tuning: kind none)."""
        kind = HARDEN_KINDS[self.defence]
        layered = kind in LMDefenceSpec.layered_kinds
        return LMDefenceSpec(kind=kind, layers=self.attack_layers if layered else (),  # type: ignore[arg-type]
                             eps=self.eps if kind != "none" else 0.0, relative_eps=self.relative_eps)


_LOOP_OWNS_HARDEN = ("target", "runs", "output", "defence", "threshold", "seed", "device", "dtype")
_LOOP_OWNS_REDTEAM = ("method", "from_run", "method_settings", "prompts", "n", "red", "target", "classifiers",
                      "threshold", "seed", "device", "dtype")


class HardenLoopConfig(Scalable):
    """`redlat experiment harden-loop`: find failures, harden the target with each defence, then red-team the
    original and every hardened model with attacks none of them was trained on."""

    target: str = Field(default=OFFLINE_TARGET, description="the chatbot to harden: offline name, hub id or directory")
    red: str = Field(default=OFFLINE_RED, description="the red LM of the zero-shot and few-shot attacks")
    classifier: str = Field(default=OFFLINE_CLASSIFIER, description="the deciding classifier of every run")
    threshold: float = Field(default=0.1, ge=0.0, le=1.0, description="a reply is a failure above this score")
    find_runs: tuple[str, ...] = Field(
        default=(), description="red-team runs whose failures to harden against; empty: the loop runs its own"
    )
    find_n: int = Field(default=200, ge=1, description="test cases of the loop's own zero-shot and few-shot runs")
    defences: tuple[Literal["tlat", "lat", "at", "sft"], ...] = Field(
        default=("tlat", "at", "sft"), description="hardening defences compared"
    )
    harden: dict[str, Any] = Field(
        default_factory=dict, description="`redlat harden` settings shared by every defence (epochs, eps, ...)"
    )
    redteam: dict[str, Any] = Field(
        default_factory=dict, description="`redlat redteam` settings of every run (target_generation, ...)"
    )
    attack_seed: int = Field(default=1, ge=0, description="seed of the unseen attacks (the find runs use seed)")
    attack_n: int = Field(default=100, ge=1, description="test cases per unseen attack and model")
    prompt_sets: tuple[str, ...] = Field(
        default=("harmbench", "advbench"), description="fixed prompt sets asked as unseen attacks (when available)"
    )
    compliance: ClassifierSpec | None = Field(
        default=ClassifierSpec(name="refusal-phrases"),
        description="judge of compliance on the prompt-set attacks, scored beside the classifier (refusal-phrases "
        "offline; lm-judge with options.model for a model judge; null: none)",
    )
    seed: int = Field(default=0, ge=0, description="seeds the find runs and hardening (one loop; see seeds)")
    seeds: tuple[int, ...] = Field(
        default=(),
        description="repeat the whole loop once per seed (find, harden, attack), for intervals over seeds; "
        "each seed's attacks use it plus (attack_seed - seed); default: [seed]",
    )
    device: str = Field(default="auto", description="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(default="auto", description="model dtype")

    @model_validator(mode="after")
    def _consistent(self) -> HardenLoopConfig:
        if not self.defences:
            raise ValueError("give at least one hardening defence")
        if len(set(self.defences)) != len(self.defences):
            raise ValueError(f"a defence is listed twice: {list(self.defences)}")
        if self.attack_seed == self.seed and not self.find_runs:
            raise ValueError("attack_seed must differ from seed, or the zero-shot attack repeats the find run")
        if not self.seeds:
            object.__setattr__(self, "seeds", (self.seed,))
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"a seed is listed twice: {list(self.seeds)}")
        if any(s < 0 for s in self.seeds):
            raise ValueError("seeds must not be negative")
        for owned, section in ((_LOOP_OWNS_HARDEN, "harden"), (_LOOP_OWNS_REDTEAM, "redteam")):
            clash = sorted(set(owned) & set(getattr(self, section)))
            if clash:
                raise ValueError(f"{section}: {', '.join(clash)} are set by the loop itself (top-level settings)")
        for section, check in (
            ("harden", lambda: self.harden_config("tlat", ("run",), "out")),
            ("redteam", lambda: self.redteam_config("zero-shot", n=1, target=self.target, seed=self.seed)),
        ):  # a bad harden or redteam setting fails here, not an hour in
            try:
                check()
            except ValidationError as exc:
                raise ValueError(f"{section}: {'; '.join(map(_error_line, exc.errors()))}") from None
        return self

    def attack_seed_for(self, seed: int) -> int:
        """The unseen attacks' seed in the loop of `seed`: as far from it as attack_seed is from seed."""
        return seed + self.attack_seed - self.seed

    def identity(self) -> dict[str, Any]:
        """One loop of `seed` keeps the identity it had before `seeds` existed (its stored runs still resume); so
        does one without a compliance judge."""
        identity = super().identity()
        if self.seeds == (self.seed,):
            identity.pop("seeds", None)
        if self.compliance is None:
            identity.pop("compliance", None)  # so a loop stored before the judge resumes with compliance: null
        return identity

    def harden_config(self, defence: str, runs: tuple[str, ...], output: str, seed: int | None = None) -> HardenConfig:
        return HardenConfig.model_validate(
            {**self.harden, "target": self.target, "runs": list(runs), "output": output, "defence": defence,
             "threshold": self.threshold, "seed": self.seed if seed is None else seed, "device": self.device,
             "dtype": self.dtype}
        )

    def redteam_config(self, method: str, *, n: int, target: str, seed: int, from_run: str | None = None,
                       prompts: str | None = None) -> RedTeamConfig:
        from redlat.red_team.method import BUILT_IN

        # the shared `redteam` settings may hold a section per method (few_shot: ...): each run takes its own only
        others = {section_key(name) for name in BUILT_IN} - {section_key(method)}
        shared = {key: value for key, value in self.redteam.items() if key not in others}
        classifiers: list[dict[str, Any]] = [{"name": self.classifier}]
        if method == "prompts" and self.compliance is not None:
            classifiers.append(self.compliance.model_dump(mode="json"))
        data: dict[str, Any] = {
            **shared, "method": method, "from_run": from_run, "n": n, "red": self.red, "target": target,
            "classifiers": classifiers, "threshold": self.threshold, "seed": seed,
            "device": self.device, "dtype": self.dtype, "ray": self.ray.model_dump(mode="json"),
        }
        if prompts is not None:
            data["prompts"] = {"source": prompts}
        return RedTeamConfig.model_validate(data)


QUICK_HARDEN_LOOP: dict[str, Any] = {
    "find_n": 24,
    "attack_n": 12,
    "defences": ["tlat", "sft"],
    "harden": {"epochs": 1, "held_out": 8, "max_failures": 8, "safe_samples": 1, "max_reply_tokens": 24,
               "max_prompt_tokens": 64},
    "redteam": {"target_generation": {"max_new_tokens": 24}},
}

