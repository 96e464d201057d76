"""Shared fixtures and settings for the whole test suite.

Cache policy (REDLAT_CACHE):
- Every test runs with REDLAT_CACHE pointing at a fresh temporary directory made for this pytest session, so tests
  never read or pollute a user's cache and never depend on what an earlier run left there.
- Tests marked `slow` instead use the real user cache (the REDLAT_CACHE the session started with, else
  ~/.cache/redlat), so the slow one-time conversion of the offline models (e.g. SmolLM2's GGUF, ~15-30 s) happens
  once per machine, not once per test session.

Slow tests (`@pytest.mark.slow`, real offline models) are skipped unless selected: `pytest -m slow`, any `-m`
expression that names `slow`, `--run-slow`, or REDLAT_RUN_SLOW=1.

Fixtures: `gpt2_tokenizer_path`, `tiny_gpt2_path` (a plain LM, no chat template) and `tiny_chat_path` (the same
model with a ChatML chat template). The tiny models are random: they exercise code paths, never results.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

CACHE_ENV = "REDLAT_CACHE"  # same as redlat.paths.CACHE_ENV
_USER_CACHE_KEY = pytest.StashKey[str | None]()
_SESSION_CACHE_KEY = pytest.StashKey[str]()

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="also run tests marked slow (real offline models)"
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_USER_CACHE_KEY] = os.environ.get(CACHE_ENV) or None
    session_cache = tempfile.mkdtemp(prefix="redlat-test-cache-")
    config.stash[_SESSION_CACHE_KEY] = session_cache
    os.environ[CACHE_ENV] = session_cache


def pytest_unconfigure(config: pytest.Config) -> None:
    user_cache = config.stash.get(_USER_CACHE_KEY, None)
    if user_cache is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = user_cache
    session_cache = config.stash.get(_SESSION_CACHE_KEY, None)
    if session_cache:
        shutil.rmtree(session_cache, ignore_errors=True)


def _slow_selected(config: pytest.Config) -> bool:
    markexpr = config.getoption("-m", default="") or ""
    return (
        bool(config.getoption("--run-slow"))
        or "slow" in markexpr
        or os.environ.get("REDLAT_RUN_SLOW", "").strip().lower() in {"1", "true", "yes"}
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _slow_selected(config):
        return
    skip = pytest.mark.skip(reason="slow (real offline models): run with -m slow or --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _redlat_cache_per_test(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slow tests see the user's cache; all others the session's temporary one (set in pytest_configure)."""
    if request.node.get_closest_marker("slow") is None:
        monkeypatch.setenv(CACHE_ENV, request.config.stash[_SESSION_CACHE_KEY])
        return
    user_cache = request.config.stash[_USER_CACHE_KEY]
    if user_cache is None:
        monkeypatch.delenv(CACHE_ENV, raising=False)  # redlat.paths falls back to ~/.cache/redlat
    else:
        monkeypatch.setenv(CACHE_ENV, user_cache)


@pytest.fixture(scope="session")
def gpt2_tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder GPT2TokenizerFast.from_pretrained / AutoTokenizer load as GPT-2's exact tokenizer (vocab 50,257)."""
    from redlat.errors import OfflinePackageMissingError
    from redlat.models.offline import gpt2_tokenizer_dir

    try:
        return gpt2_tokenizer_dir(cache=tmp_path_factory.mktemp("gpt2-tokenizer-cache"))
    except OfflinePackageMissingError as exc:
        pytest.skip(f"GPT-2 tokenizer package not installed: {exc}")


@pytest.fixture(scope="session")
def tiny_gpt2_path(tmp_path_factory: pytest.TempPathFactory, gpt2_tokenizer_path: Path) -> Path:
    """A random 2-layer, 32-wide GPT-2 (real GPT-2 tokenizer, no chat template): a plain LM for DPG tests."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    directory = tmp_path_factory.mktemp("tiny-gpt2")
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=1024, vocab_size=50257)
    GPT2LMHeadModel(config).save_pretrained(directory)
    GPT2TokenizerFast.from_pretrained(gpt2_tokenizer_path).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_chat_path(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2_path: Path) -> Path:
    """The tiny GPT-2 of `tiny_gpt2_path`, with a ChatML chat template on its tokenizer."""
    from transformers import AutoTokenizer

    directory = tmp_path_factory.mktemp("tiny-chat")
    shutil.copytree(tiny_gpt2_path, directory, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def questioner_path(tmp_path_factory: pytest.TempPathFactory, gpt2_tokenizer_path: Path) -> Path:
    """A tiny plain LM whose hand-set weights write short word strings with "?" and newlines (see tiny_models)."""
    from tiny_models import make_questioner

    return make_questioner(tmp_path_factory.mktemp("questioner"), gpt2_tokenizer_path)


@pytest.fixture(scope="session")
def questioner_chat_path(tmp_path_factory: pytest.TempPathFactory, gpt2_tokenizer_path: Path) -> Path:
    """The questioner with a ChatML chat template."""
    from tiny_models import make_questioner

    return make_questioner(tmp_path_factory.mktemp("questioner-chat"), gpt2_tokenizer_path,
                           chat_template=CHATML_TEMPLATE)


@pytest.fixture(scope="session")
def questioner_lm(questioner_path: Path):
    from redlat.models.causal_lm import load_causal_lm

    return load_causal_lm(str(questioner_path), device="cpu")


@pytest.fixture(scope="session")
def questioner_chat_lm(questioner_chat_path: Path):
    from redlat.models.causal_lm import load_causal_lm

    return load_causal_lm(str(questioner_chat_path), device="cpu")


@pytest.fixture(scope="session")
def tiny_embedder_path(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2_path: Path) -> Path:
    """A sentence-transformers folder: the random tiny GPT-2 with mean pooling (32-d). Code paths only."""
    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    lm = tmp_path_factory.mktemp("tiny-embedder-lm")
    shutil.copytree(tiny_gpt2_path, lm, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(lm)
    tokenizer.pad_token = tokenizer.eos_token  # GPT-2 has none; batches need one
    tokenizer.save_pretrained(lm)
    transformer = Transformer(str(lm))
    dimension = transformer.auto_model.config.hidden_size
    directory = tmp_path_factory.mktemp("tiny-embedder")
    SentenceTransformer(modules=[transformer, Pooling(dimension, "mean")], device="cpu").save(str(directory))
    return directory
