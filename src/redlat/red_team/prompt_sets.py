"""Fixed test cases: a published prompt set (HarmBench, AdvBench) or your own file, put to the target as they are.

No red LM writes them. A run takes the set's prompts in an order shuffled once by the run seed (or the file's
order), up to n, so the same seed asks every target the same prompts: before/after comparisons are paired.

Sources:
- `harmbench`: the 400 HarmBench text behaviours (Mazeika et al. 2024); by default only the 200 `standard` ones
  (the `contextual` ones need their context string, the `copyright` ones a hash-based judge).
- `advbench`: the 520 AdvBench harmful behaviours (Zou et al. 2023), in HarmBench's format.
  Both are read from `../shared/data/` when present, else downloaded once from HarmBench's repository into the cache.
- a path: `.csv` (a `Behavior`, `prompt`, `goal` or `text` column), `.jsonl` (a `prompt` or `text` field) or any
  other text file (one prompt per line).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from redlat.errors import ConfigError
from redlat.red_team.method import Candidate, Method, MethodSettings, RoundContext


class PromptSetSettings(MethodSettings):
    """The `prompts` method: fixed test cases from a published set or a file, asked as they are."""

    source: str | None = Field(
        default=None, description="harmbench | advbench | a .csv, .jsonl or text file of prompts"
    )
    categories: tuple[str, ...] = Field(
        default=("standard",), description="HarmBench FunctionalCategory values kept; empty keeps every row"
    )
    shuffle: bool = Field(default=True, description="ask the prompts in an order shuffled by the seed")

    @model_validator(mode="after")
    def _given(self) -> PromptSetSettings:
        if not self.source:
            raise ValueError("--method prompts needs a prompt set: --prompts harmbench | advbench | FILE")
        return self

_HARMBENCH_RAW = "https://raw.githubusercontent.com/centerforaisafety/HarmBench/main/data/behavior_datasets/"
KNOWN_SETS: dict[str, str] = {
    "harmbench": "harmbench_behaviors_text_all.csv",
    "advbench": "advbench_behaviors_harmbench-format.csv",
}
_SHARED = Path("..") / "shared" / "data"
_TEXT_COLUMNS = ("Behavior", "behavior", "prompt", "goal", "text")


@dataclass(frozen=True)
class FixedCase:
    text: str
    origin: dict[str, Any]


def resolve_prompt_source(source: str, *, cache: Path | None = None) -> Path:
    """The file behind a prompt source: a known set's local copy (downloaded once if need be), or a path."""
    if source not in KNOWN_SETS:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"prompt set {source!r}: no such file; give {' or '.join(map(repr, KNOWN_SETS))}, or a .csv, .jsonl "
                "or text file of prompts"
            )
        return path
    filename = KNOWN_SETS[source]
    if (_SHARED / filename).is_file():
        return _SHARED / filename
    from redlat.paths import cache_dir

    cached = (cache or cache_dir()) / "prompt_sets" / filename
    if cached.is_file():
        return cached
    import urllib.request

    from redlat.atomic import write_atomic

    try:
        with urllib.request.urlopen(_HARMBENCH_RAW + filename, timeout=30) as response:
            data = response.read()
    except OSError as exc:
        raise ConfigError(
            f"cannot get the {source} prompts: not at {_SHARED / filename} and the download from HarmBench's "
            f"repository failed ({type(exc).__name__}). Download {filename} and pass its path instead."
        ) from exc
    cached.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(cached, lambda tmp: tmp.write_bytes(data))
    return cached


def read_prompt_file(path: Path, *, categories: tuple[str, ...] = ()) -> list[FixedCase]:
    """The prompts in a file, each with where it came from (row, id, category when the file has them).

    `categories` keeps only rows whose HarmBench `FunctionalCategory` is listed (files without that column are
    kept whole).
    """
    suffix = "".join(path.suffixes[-1:]).lower()
    cases: list[FixedCase] = []
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            column = next((c for c in _TEXT_COLUMNS if c in (reader.fieldnames or [])), None)
            if column is None:
                raise ConfigError(
                    f"{path}: no prompt column; a .csv needs one of {', '.join(_TEXT_COLUMNS)} "
                    f"(found {', '.join(reader.fieldnames or []) or 'no header'})"
                )
            for row_number, row in enumerate(reader):
                functional = row.get("FunctionalCategory") or ""
                if categories and "FunctionalCategory" in row and functional not in categories:
                    continue
                origin = {"row": row_number}
                for key, name in (("BehaviorID", "id"), ("SemanticCategory", "category"),
                                  ("FunctionalCategory", "functional_category")):
                    if row.get(key):
                        origin[name] = row[key]
                cases.append(FixedCase(row[column] or "", origin))
    elif suffix == ".jsonl":
        for row_number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}, line {row_number + 1}: not JSON ({exc.msg})") from None
            text = record.get("prompt", record.get("text")) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise ConfigError(f"{path}, line {row_number + 1}: needs a string 'prompt' or 'text' field")
            cases.append(FixedCase(text, {"row": row_number}))
    else:
        for row_number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            cases.append(FixedCase(line, {"row": row_number}))
    cases = [FixedCase(" ".join(c.text.split()), c.origin) for c in cases]
    return [c for c in cases if c.text]


class FixedCases:
    """A prompt set in a run's order: `take(start, k)` gives the next k prompts."""

    def __init__(self, source: str, path: Path, cases: list[FixedCase], *, seed: int, shuffle: bool) -> None:
        if not cases:
            raise ConfigError(f"prompt set {source!r} ({path}) holds no prompts (after the category filter)")
        order = list(range(len(cases)))
        if shuffle:
            random.Random(seed).shuffle(order)
        self.source = source
        self.path = path
        self.cases = [cases[i] for i in order]
        self.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()

    def take(self, start: int, k: int) -> list[FixedCase]:
        return self.cases[start : start + k]

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "path": str(self.path), "sha256": self.sha256, "size": len(self.cases)}


def load_fixed_cases(source: str, *, categories: tuple[str, ...], seed: int, shuffle: bool) -> FixedCases:
    path = resolve_prompt_source(source)
    return FixedCases(source, path, read_prompt_file(path, categories=categories), seed=seed, shuffle=shuffle)


class PromptSet(Method):
    """Fixed test cases asked as they are: no red LM, every prompt valid, the set's order seeded by the run."""

    name = "prompts"
    summary = "a fixed prompt set (HarmBench, AdvBench or a file) asked as it is; no red LM"
    settings_model = PromptSetSettings
    needs_red = False

    def __init__(self, cfg: Any, run_dir: Path) -> None:
        super().__init__(cfg, run_dir)
        s = self.settings
        assert s.source is not None  # the settings require it
        self.fixed = load_fixed_cases(s.source, categories=tuple(s.categories), seed=cfg.seed, shuffle=s.shuffle)

    def inputs(self) -> dict[str, str]:
        return {"prompts_sha256": self.fixed.sha256}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.fixed.describe()}

    def capacity(self) -> int:
        return len(self.fixed.cases)

    def propose(self, ctx: RoundContext) -> list[Candidate]:
        return [Candidate(c.text, c.text, c.origin) for c in self.fixed.take(ctx.first_index, ctx.k)]
