"""The defence model every experiment and `redlat harden` share: a kind (none, at, lat, targeted-lat), where the
attacker perturbs, and how large its ball is. Each domain narrows it: images add the norm, chat models the recipe,
and each says how a layer is named. One class holds the validation, the name and the family every table, figure and
stored result uses."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_serializer, model_validator

from redlat.config.base import _Frozen

Recipe = Literal["sheshadri2024", "casper2024"]


class BaseDefenceSpec(_Frozen):
    """One defence: `kind` none (plain fine-tuning), at (perturb the input or the embeddings), lat (perturb hidden
    layers) or targeted-lat; `layers` where LAT perturbs; `eps` the ball's radius, by default a fraction of the
    layer's median activation norm on the defender's data (`relative_eps`)."""

    kind: str = "none"
    layers: tuple[int | str, ...] = Field(default=(), description="lat, targeted-lat: where to perturb")
    eps: float = Field(default=0.0, ge=0.0, description="ball radius (relative to the layer's norm by default)")
    relative_eps: bool = Field(default=True, description="eps is a fraction of the layer's median norm")

    layered_kinds: ClassVar[tuple[str, ...]] = ("lat", "targeted-lat")
    layer_example: ClassVar[str] = "[4]"
    at_perturbs: ClassVar[str] = "the embeddings"

    @property
    def where(self) -> tuple[int | str, ...]:
        """Where the attacker perturbs: the layers, or the embeddings (hidden state 0) for AT."""
        return (0,) if self.kind == "at" else self.layers

    @property
    def name(self) -> str:
        """The setting's name in stores, tables and figures: kind, layers, the domain's extras, eps (x: relative)."""
        if self.kind == "none":
            return "none" + self._suffix()
        parts = [{"targeted-lat": "tlat"}.get(self.kind, self.kind)]
        if self.kind in self.layered_kinds:
            parts.append("+".join(str(layer) for layer in self.layers))
        parts += self._name_extras()
        parts.append(f"{self.eps:g}{'x' if self._eps_is_relative() else ''}")
        return "-".join(parts) + self._suffix()

    @property
    def family(self) -> str:
        """Settings that differ only in eps share a family (a line in the Pareto figures)."""
        if self.kind == "none":
            return "plain fine-tuning"
        if self.kind in self.layered_kinds:
            prefix = {"targeted-lat": "tlat"}.get(self.kind, self.kind)
            return f"{prefix}-{'+'.join(str(layer) for layer in self.layers)}"
        return self.kind

    def describe(self) -> dict[str, Any]:
        """What a stored result says of its setting: the spec's fields, its family and its label."""
        return {**self.model_dump(mode="json"), "family": self.family, "label": self.name}

    def _name_extras(self) -> list[str]:
        return []

    def _suffix(self) -> str:
        return ""

    def _eps_is_relative(self) -> bool:
        return self.relative_eps

    @model_validator(mode="after")
    def _complete(self) -> BaseDefenceSpec:
        if self.kind != "none" and self.eps <= 0:
            raise ValueError(f"a {self.kind} defence needs eps > 0")
        if self.kind in self.layered_kinds and not self.layers:
            raise ValueError(f"a {self.kind} defence needs layers (e.g. {self.layer_example})")
        if self.kind not in self.layered_kinds and self.layers:
            raise ValueError(f"layers are for {' and '.join(self.layered_kinds)} defences "
                             f"({self.kind} perturbs {'nothing' if self.kind == 'none' else self.at_perturbs})")
        if any(isinstance(layer, int) and layer < 0 for layer in self.layers):
            raise ValueError("layer indices start at 0 (the embeddings)")
        return self


class DefenceSpec(BaseDefenceSpec):
    """A defence of an image classifier: AT perturbs the input pixels with eps absolute; LAT a named module's output,
    with eps (by default) a fraction of that module's median per-example activation norm, in the given norm."""

    kind: Literal["none", "at", "lat"] = "none"
    norm: Literal["linf", "l2", "l1"] = "l2"
    layers: tuple[str, ...] = Field(default=(), description="lat: modules whose outputs are perturbed")

    layered_kinds: ClassVar[tuple[str, ...]] = ("lat",)
    layer_example: ClassVar[str] = "[block2]"
    at_perturbs: ClassVar[str] = "the input"

    @property
    def where(self) -> tuple[int | str, ...]:
        return self.layers

    @property
    def family(self) -> str:
        if self.kind == "none":
            return "none"
        return f"at-{self.norm}" if self.kind == "at" else super().family

    def _name_extras(self) -> list[str]:
        return [self.norm]

    def _eps_is_relative(self) -> bool:
        return self.kind == "lat" and self.relative_eps


class LMDefenceSpec(BaseDefenceSpec):
    """A forget-phase defence of a chat model. `layers` name where the attacker perturbs: an integer k is the residual
    stream that enters decoder block k (Hugging Face's hidden_states[k]; 0 = the token embeddings), a string a module
    name. With the default recipe eps is per token (L2) on the prompt's tokens and, by default, a fraction of that
    layer's median per-token norm on the defender's data. AT is the same attack on the embeddings (layer 0)."""

    kind: Literal["none", "at", "lat", "targeted-lat"] = "none"
    recipe: Recipe = Field(
        default="sheshadri2024",
        description="sheshadri2024: per-token L2 on the prompt, loss on the reply; casper2024: Casper et al.'s code "
        "(one L2 ball per sequence in units of the activations' spread, loss on the whole dialogue, clipped to the "
        "observed range; eps absolute)",
    )

    layer_example: ClassVar[str] = "[4], or [0, 4, 8]"

    @property
    def family(self) -> str:
        return super().family + (" (casper2024)" if self.recipe == "casper2024" else "")

    def _suffix(self) -> str:
        return "-casper" if self.recipe == "casper2024" else ""

    def _eps_is_relative(self) -> bool:
        return self.relative_eps and self.recipe != "casper2024"

    @model_serializer(mode="wrap")
    def _without_unused_relative_eps(self, handler: Any) -> Any:
        """casper2024's eps is absolute: its rows are stored without relative_eps, so a stored config validates
        again (and a user's relative_eps with that recipe stays an error)."""
        data = handler(self)
        if self.recipe == "casper2024" and isinstance(data, dict):
            data.pop("relative_eps", None)
        return data

    @model_validator(mode="after")
    def _recipe_fits(self) -> LMDefenceSpec:
        if self.recipe == "casper2024":
            if self.kind == "targeted-lat":
                raise ValueError("the casper2024 recipe is untargeted (none, at, lat); targeted-lat follows "
                                 "sheshadri2024")
            if "relative_eps" in self.model_fields_set and self.relative_eps:
                raise ValueError("casper2024's eps is absolute (in units of the activations' spread, as in its code): "
                                 "leave relative_eps out")
        return self


class TextDefenceSpec(BaseDefenceSpec):
    """A clean fine-tuning of a poisoned text classifier. `layers` name where the attacker perturbs: an integer k is
    the output of encoder layer k (0: the token embeddings, which is AT), a string a module name. eps is per token
    (L2) on every real token and, by default, a fraction of that layer's median token norm."""

    kind: Literal["none", "at", "lat"] = "none"

    layered_kinds: ClassVar[tuple[str, ...]] = ("lat",)
    layer_example: ClassVar[str] = "[2], or [2, 4]"
