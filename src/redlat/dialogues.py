"""Human/Assistant dialogues (Anthropic HH-RLHF's format) as chat messages.

An HH record holds two transcripts, `chosen` and `rejected`, that share every turn but the last reply; each is text of
the form "\\n\\nHuman: ...\\n\\nAssistant: ...". `read_hh` parses a .jsonl or .jsonl.gz file of such records into
`Dialogue`s: the shared turns as messages (role user / assistant) and the two final replies. Users with the hub can
pass the downloaded file of `Anthropic/hh-rlhf` (e.g. `harmless-base/test.jsonl.gz`); tests read the copy in
`../shared/data/` when it is present.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path

from redlat.errors import ConfigError

_TURN = re.compile(r"\n\n(Human|Assistant): ")
_ROLES = {"Human": "user", "Assistant": "assistant"}


@dataclass(frozen=True)
class Dialogue:
    messages: tuple[dict[str, str], ...]  # the turns before the final reply, ending with a user turn
    chosen: str  # the preferred final reply
    rejected: str  # the other final reply


def parse_transcript(text: str) -> list[dict[str, str]]:
    """"\\n\\nHuman: a\\n\\nAssistant: b" -> [{"role": "user", "content": "a"}, {"role": "assistant", ...}]."""
    parts = _TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise ValueError("not a Human/Assistant transcript")
    return [
        {"role": _ROLES[speaker], "content": content.strip()}
        for speaker, content in zip(parts[1::2], parts[2::2], strict=True)
    ]


def dialogue_from_record(record: dict[str, str]) -> Dialogue | None:
    """The record's shared turns and two final replies; None if it does not have that shape."""
    try:
        chosen, rejected = parse_transcript(record["chosen"]), parse_transcript(record["rejected"])
    except (KeyError, TypeError, ValueError):
        return None
    if len(chosen) < 2 or chosen[:-1] != rejected[:-1] or chosen[-1]["role"] != "assistant":
        return None
    if rejected[-1]["role"] != "assistant":
        return None
    return Dialogue(tuple(chosen[:-1]), chosen[-1]["content"], rejected[-1]["content"])


def read_hh(path: str | Path, *, limit: int | None = None) -> list[Dialogue]:
    """Dialogues from an HH-format .jsonl(.gz) file; records of another shape are skipped (an error if all are)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    dialogues: list[Dialogue] = []
    seen = 0
    try:
        with opener(path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
            for line in handle:
                if not line.strip():
                    continue
                seen += 1
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                dialogue = dialogue_from_record(record) if isinstance(record, dict) else None
                if dialogue is not None:
                    dialogues.append(dialogue)
                    if limit is not None and len(dialogues) >= limit:
                        break
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read dialogues from {path}: {exc}") from exc
    if not dialogues:
        raise ConfigError(
            f"{path} holds no Human/Assistant dialogues ({seen} records read); expected HH-RLHF's "
            '{"chosen": ..., "rejected": ...} lines'
        )
    return dialogues


HH_HARMLESS_BASE = "hh-harmless-base"
_HH_LOCAL = Path("..") / "shared" / "data" / "hh-rlhf_harmless-base_test.jsonl.gz"
_HH_HUB = ("Anthropic/hh-rlhf", "harmless-base/test.jsonl.gz")


def resolve_dialogues(source: str) -> Path:
    """The file behind a dialogue source: a path, or `hh-harmless-base` (the copy in ../shared/data/ when present,
    else HH-RLHF's harmless-base test split from the Hugging Face hub, cached by huggingface_hub)."""
    if source != HH_HARMLESS_BASE:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"dialogues {source!r}: no such file; give an HH-format .jsonl(.gz) file or {HH_HARMLESS_BASE!r}"
            )
        return path
    if _HH_LOCAL.is_file():
        return _HH_LOCAL
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(_HH_HUB[0], _HH_HUB[1], repo_type="dataset"))
    except Exception as exc:  # offline, no such repo, no permission: all mean the same to the user
        raise ConfigError(
            f"cannot get {HH_HARMLESS_BASE}: not at {_HH_LOCAL} and the hub download of {_HH_HUB[0]} "
            f"({_HH_HUB[1]}) failed ({type(exc).__name__}). Download that file and pass its path as the dialogues."
        ) from exc
