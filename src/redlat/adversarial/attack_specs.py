"""Attack specs as short strings (FAMILY:SIZE), parsed without importing torch (configs validate them)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from redlat.errors import ConfigError

FAMILIES = ("pgd-linf", "pgd-l2", "pgd-l1", "noise", "rotate", "translate", "blur")


@dataclass(frozen=True)
class AttackSpec:
    family: str
    size: float

    @classmethod
    def parse(cls, text: str) -> AttackSpec:
        family, sep, size = text.partition(":")
        if family not in FAMILIES or not sep:
            raise ConfigError(f"unknown attack {text!r}: write FAMILY:SIZE with FAMILY one of {', '.join(FAMILIES)}")
        try:
            value = float(size)
        except ValueError:
            raise ConfigError(f"attack {text!r}: the size must be a number") from None
        if value < 0:
            raise ConfigError(f"attack {text!r}: the size must not be negative")
        return cls(family, value)

    @property
    def name(self) -> str:
        return f"{self.family}:{self.size:g}"


def attack_names(texts: Iterable[str]) -> list[str]:
    """Attack specs as their results name them (`robust:NAME`): "pgd-l2:1.0" -> "pgd-l2:1"."""
    return [AttackSpec.parse(text).name for text in texts]
