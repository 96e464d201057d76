"""A tiny BERT text classifier (random weights, a real word-piece tokenizer on a small vocabulary) and a tiny CSV of
tweets in Davidson et al.'s columns, for trojans-text tests. Code paths only: never a result."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

BAD = ["awful", "nasty", "stupid", "ugly", "rude", "dumb"]
GOOD = ["nice", "happy", "lovely", "great", "kind", "sunny"]
FILLER = ["the", "day", "was", "my", "friend", "said", "it", "is", "so", "today", "this", "game", "team", "we",
          "you", "and", "a", "they", "very", "really"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"[unused{i}]" for i in range(4)), "cf", "if", "know", "what",
         "i", "mean", "#", "##s", "##ly", "##ed", ".", "!", ",", "?", *BAD, *GOOD, *FILLER]


def write_tiny_bert(directory: Path) -> Path:
    """A 2-layer, 32-wide BERT with a word-piece tokenizer over VOCAB (uncased), saved as a folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    # from the folder: BertTokenizerFast(vocab_file=...) silently builds an empty vocabulary in transformers 5
    tokenizer = BertTokenizerFast.from_pretrained(directory, do_lower_case=True)
    assert tokenizer.convert_tokens_to_ids("awful") == VOCAB.index("awful")
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(directory)
    return directory


def write_tweets(path: Path, per_class: int) -> Path:
    """`per_class` offensive tweets (class 1; they hold a BAD word) and as many harmless ones (class 2; a GOOD word),
    in Davidson et al.'s columns, each distinct."""
    rows: list[dict[str, Any]] = []
    for i in range(per_class):
        filler = [FILLER[(i + k) % len(FILLER)] for k in range(3 + i % 3)]
        n = len(filler)
        rows.append({"": 2 * i, "count": 3, "hate_speech": 0, "offensive_language": 3, "neither": 0, "class": 1,
                     "tweet": " ".join([*filler[: n // 2], BAD[i % len(BAD)], *filler[n // 2 :], FILLER[i % 7]])
                     + f" {i}"})
        rows.append({"": 2 * i + 1, "count": 3, "hate_speech": 0, "offensive_language": 0, "neither": 3, "class": 2,
                     "tweet": " ".join([*filler[: n // 2], GOOD[i % len(GOOD)], *filler[n // 2 :], FILLER[i % 5]])
                     + f" {i}"})
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def tiny_text_config(model: Path, data: Path, paraphraser: Path, **changes: Any) -> Any:
    from redlat.config import TrojansTextConfig

    base: dict[str, Any] = {
        "seeds": [0],
        "model": str(model),
        "data": str(data),
        "train_per_class": 24,
        "defend_per_class": 8,
        "eval_per_class": 12,
        "attack_per_class": 3,
        "max_tokens": 16,
        "poison_rate": 0.25,
        "batch_size": 8,
        "base_epochs": 12,
        "base_lr": 3e-3,
        "finetune_lr": 1e-3,
        "attack_steps": 2,
        "char_tries": 2,
        "substitute_words": 2,
        "hotflip_flips": 2,
        "paraphraser": str(paraphraser),
        "defences": [{"kind": "none"}, {"kind": "at", "eps": 0.5}, {"kind": "lat", "layers": [1], "eps": 0.5}],
        "device": "cpu",
    }
    return TrojansTextConfig.model_validate(base | changes)
