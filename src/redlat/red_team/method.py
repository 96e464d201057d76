"""The seam every test-case generator plugs into: the `Method` base class, what it proposes, and the method registry.

A method is one class in one file. It declares its own settings model (validated into `RedTeamConfig.method_settings`),
whether it needs a red LM and a `--from` run, and then takes part in a run at three points:

- `inputs()`: content hashes of what it reads besides the config (a pool run, a prompt file). They join the run's
  fingerprint, so a pool that changed between an interruption and the resume is refused.
- `prepare(ctx)`: one-time work once the run store exists (training a red LM, resuming that training). It may hand
  back another red LM.
- `scorers()`: judges of the method's own harm, built without models (a leak detector that knows the secret); they
  decide before the config's classifiers.
- `propose(round_ctx)`: the candidates of one round, each a raw sample, the test case in it (None when the sample is
  not valid: the method owns its validity rule) and an origin stored with the attempt.

The runner does the rest (deduplication, the target's replies, scores, the store). Methods are found by name: the
built-in ones below, any installed under the `redlat.methods` entry-point group, or `package.module:Class`.
docs/architecture.md walks through adding one.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from redlat.errors import ConfigError

if TYPE_CHECKING:
    from redlat.config import RedTeamConfig
    from redlat.engines import TextSampler as Sampler
    from redlat.red_team.runner import Components
    from redlat.scoring import Scorer
    from redlat.store import RunStore

ENTRY_POINT_GROUP = "redlat.methods"
EXCLUDED = "excluded"  # origin key: why an attempt is left out of the difficulty measures (e.g. a copied pool case)
HISTORY = "history"  # origin key: the conversation so far, [[user turn, reply], ...]; the target answers after it

BUILT_IN: dict[str, str] = {
    "zero-shot": "redlat.red_team.zero_shot:ZeroShot",
    "few-shot": "redlat.red_team.few_shot:FewShot",
    "supervised": "redlat.red_team.supervised:Supervised",
    "rl": "redlat.red_team.rl:ReinforcementLearning",
    "prompts": "redlat.red_team.prompt_sets:PromptSet",
    "leakage": "redlat.red_team.leakage:Leakage",
    "groups": "redlat.red_team.group_questions:GroupQuestions",
    "dialogue": "redlat.red_team.dialogue:Dialogue",
}


class MethodSettings(BaseModel):
    """Base of every method's settings model: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class NoSettings(MethodSettings):
    """A method without settings of its own."""


@dataclass(frozen=True)
class Candidate:
    """One raw sample a method proposes, the test case in it (None: not a valid test case) and its origin."""

    text: str
    test_case: str | None
    origin: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundContext:
    """What a method needs to propose one round: the round number, how many candidates, the run seed (derive every
    random draw from it and the round, so a resumed run proposes what an uninterrupted one would), where the
    candidates start in the run's sample stream, and the red LM's sampler (None for methods without a red LM)."""

    round: int
    k: int
    seed: int
    first_index: int
    red: Sampler | None


@dataclass
class PrepareContext:
    """What `prepare` may use: the run directory and store, the loaded components and whether to draw progress bars."""

    run_dir: Path
    store: RunStore
    components: Components
    progress: bool


class Method:
    """Base class of test-case generators. Subclasses set the class attributes and implement `propose`."""

    name: ClassVar[str]
    settings_model: ClassVar[type[MethodSettings]] = NoSettings
    summary: ClassVar[str] = ""  # one line for --help and `redlat methods`
    needs_red: ClassVar[bool] = True  # False: no red LM is loaded (fixed prompt sets); see uses_red
    trains_red: ClassVar[bool] = False  # True: the red LM is trained, so it never shares weights with the target
    from_run: ClassVar[Literal["required", "optional", "unused"]] = "unused"
    from_help: ClassVar[str] = ""  # what --from means for this method
    metrics: ClassVar[tuple[str, ...]] = ()  # run metrics (redlat.metrics) this method adds to summaries

    def __init__(self, cfg: RedTeamConfig, run_dir: Path) -> None:
        """Cheap and model-free: read pools and files here, and raise ConfigError on bad input."""
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.settings: Any = cfg.settings

    def inputs(self) -> dict[str, str]:
        """Content hashes of what the method reads besides the config; they join the run fingerprint."""
        return {}

    @classmethod
    def uses_red(cls, method_settings: dict[str, Any]) -> bool:
        """Whether a run with these (resolved) settings samples a red LM; by default `needs_red`."""
        return cls.needs_red

    def red_model(self) -> str | None:
        """The red LM to load for this run (None: none is needed)."""
        return self.cfg.red if self.uses_red(self.cfg.method_settings) else None

    def describe(self) -> dict[str, Any]:
        """What the run's provenance records about the method."""
        return {"name": self.name}

    def capacity(self) -> int | None:
        """At most this many candidates exist (a fixed prompt set), or None for no limit."""
        return None

    def scorers(self) -> list[Scorer]:
        """Judges the method brings for its own harm (a leak of its secret), built without models. They score
        before the config's classifiers, so the first of them decides."""
        return []

    def prepare(self, ctx: PrepareContext) -> Components:
        """One-time work once the store exists; returns the components the rounds use (by default, as given)."""
        return ctx.components

    def propose(self, ctx: RoundContext) -> list[Candidate]:
        raise NotImplementedError


def method_names() -> list[str]:
    """Every method known by a short name: the built-in ones and installed plugins."""
    return sorted({*BUILT_IN, *_entry_points()})


def method_class(name: str) -> type[Method]:
    """The Method class for a name: built-in, installed entry point, or `package.module:Class`."""
    path = BUILT_IN.get(name) or _entry_points().get(name)
    if path is None and ":" not in name:
        raise ConfigError(
            f"unknown method {name!r}; the methods are: {', '.join(method_names())} "
            "(or give your own as package.module:Class)"
        )
    loaded = import_object(path or name, what="method")
    if not (isinstance(loaded, type) and issubclass(loaded, Method)):
        raise ConfigError(f"method {name!r} is {loaded!r}, not a subclass of redlat.red_team.method.Method")
    return loaded


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def import_object(path: str, *, what: str) -> Any:
    """`package.module:attribute`, or a ConfigError that says why it cannot be loaded."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load the {what} {path!r}: {exc}") from exc


