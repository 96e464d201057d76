"""SHA-256 of weight files, remembered by (path, size, mtime) so large files are hashed once."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from redlat.atomic import write_text_atomic
from redlat.paths import cache_dir

_CHUNK = 1 << 20
WEIGHT_SUFFIXES = (
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".gguf",
    ".h5",
    ".json",
    ".pickle",
    ".joblib",
    ".txt",
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_files(paths: Iterable[Path], *, cache: Path | None = None) -> dict[str, str]:
    """Map each file's resolved path to its SHA-256, reusing hashes of unchanged files."""
    memo_path = (cache if cache is not None else cache_dir()) / "file_hashes.json"
    try:
        memo: dict[str, list] = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    out: dict[str, str] = {}
    changed = False
    for path in paths:
        path = Path(path).resolve()
        stat = path.stat()
        key = str(path)
        seen = memo.get(key)
        if seen and seen[0] == stat.st_size and seen[1] == stat.st_mtime_ns:
            out[key] = seen[2]
            continue
        digest = sha256_file(path)
        memo[key] = [stat.st_size, stat.st_mtime_ns, digest]
        out[key] = digest
        changed = True
    if changed:
        write_text_atomic(memo_path, json.dumps(memo))
    return out


def weight_files(directory: Path) -> list[Path]:
    """The files in a model directory that determine its behaviour (weights, configs, vocabularies)."""
    return sorted(p for p in Path(directory).rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
