"""HH dialogues and LM batches: parsing, labels only on completions, shared prompt positions; and targeted LAT on
such batches lowers a planted trigger's pull on a tiny LM."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from redlat.adversarial.lm_batches import completion_batch, pair_batch, prompt_text
from redlat.dialogues import parse_transcript, read_hh
from redlat.errors import ConfigError

HH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hh-rlhf_harmless-base_test.jsonl.gz"


def test_transcripts_parse_into_messages(tmp_path):
    assert parse_transcript("\n\nHuman: hi there\n\nAssistant: hello\n\nHuman: bye") == [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "bye"},
    ]
    path = tmp_path / "hh.jsonl.gz"
    good = {"chosen": "\n\nHuman: q?\n\nAssistant: fine", "rejected": "\n\nHuman: q?\n\nAssistant: rude"}
    with gzip.open(path, "wt") as f:
        f.write(json.dumps(good) + "\n" + "not json\n" + json.dumps({"chosen": "x"}) + "\n")
    [dialogue] = read_hh(path)
    assert dialogue.messages == ({"role": "user", "content": "q?"},)
    assert (dialogue.chosen, dialogue.rejected) == ("fine", "rude")
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "no dialogue"}) + "\n")
    with pytest.raises(ConfigError, match="holds no Human/Assistant dialogues"):
        read_hh(empty)
    with pytest.raises(ConfigError, match="cannot read"):
        read_hh(tmp_path / "missing.jsonl")


@pytest.mark.skipif(not HH.exists(), reason="../shared/data is not present")
def test_the_real_hh_harmless_base_file_reads():
    dialogues = read_hh(HH)
    assert len(dialogues) > 2000  # 2,312 records, nearly all well formed
    assert all(d.messages[-1]["role"] == "user" for d in dialogues[:100])


def test_batches_label_only_the_completion_and_share_prompt_positions(tiny_chat_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_chat_path)
    messages = [{"role": "user", "content": "How do I pick a lock?"}]
    assert prompt_text(tok, messages).endswith("<|im_start|>assistant\n")
    hi = [{"role": "user", "content": "Hi"}]
    batch = completion_batch(tok, [(messages, "I can't help with that."), (hi, "Hello!")])
    for row in range(2):
        labelled = batch["labels"][row][batch["labels"][row] != -100]
        text = tok.decode(labelled)
        assert text.startswith(("I can't help", "Hello!"))
        assert torch.all(batch["labels"][row][batch["prompt_mask"][row] == 1] == -100)
        assert torch.all(batch["attention_mask"][row][batch["prompt_mask"][row] == 1] == 1)
    pairs = pair_batch(tok, [(messages, "No.", "Sure, first take a tension wrench and then")], retain=[(messages, "x")])
    assert pairs["safe"]["input_ids"].shape == pairs["harmful"]["input_ids"].shape
    prompt = pairs["prompt_mask"][0] == 1
    assert torch.equal(pairs["safe"]["input_ids"][0][prompt], pairs["harmful"]["input_ids"][0][prompt])
    assert "retain" in pairs and pairs["retain"]["labels"].shape[0] == 1


def test_dialogue_sources_resolve_to_a_file_or_say_how_to_get_one(tmp_path, monkeypatch):
    import redlat.dialogues as dialogues
    from redlat.dialogues import HH_HARMLESS_BASE, resolve_dialogues

    mine = tmp_path / "mine.jsonl"
    mine.write_text("{}\n")
    assert resolve_dialogues(str(mine)) == mine
    with pytest.raises(ConfigError, match="no such file"):
        resolve_dialogues(str(tmp_path / "nope.jsonl"))
    monkeypatch.setattr(dialogues, "_HH_LOCAL", mine)
    assert resolve_dialogues(HH_HARMLESS_BASE) == mine  # the shared copy when present
    monkeypatch.setattr(dialogues, "_HH_LOCAL", tmp_path / "absent.jsonl.gz")

    def offline(*args, **kwargs):
        raise OSError("no network")

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(ConfigError, match="Download that file and pass its path"):
        resolve_dialogues(HH_HARMLESS_BASE)
