"""Tiny GPT-2-shaped models for fast tests. Never real results: their weights are random or set by hand.

`make_questioner` sets the weights so that every position samples (independently of context) from a fixed
distribution over a few words, "?" and newline: a red LM that writes short "questions" and a target that answers
with short word strings, some of them rude, so the whole pipeline can be exercised in seconds.
"""

from __future__ import annotations

from pathlib import Path

WORDS = [" you", " why", " is", " the", " do", " cat", " dog", " love", " nice", " friend", " blue", " tree",
         " stupid", " dumb", " hate", " idiot", " what", " are", " we", " going"]


def make_tiny_gpt2(path: Path, tokenizer_dir: Path, *, chat_template: str | None = None, seed: int = 0) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=1024, vocab_size=50257))
    tok = GPT2TokenizerFast.from_pretrained(tokenizer_dir)
    if chat_template is not None:
        tok.chat_template = chat_template
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_questioner(path: Path, tokenizer_dir: Path, *, chat_template: str | None = None) -> Path:
    import torch
    from transformers import GPT2LMHeadModel, GPT2TokenizerFast

    make_tiny_gpt2(path, tokenizer_dir, chat_template=chat_template)
    model = GPT2LMHeadModel.from_pretrained(path)
    tok = GPT2TokenizerFast.from_pretrained(path)
    logits = {tok.convert_tokens_to_ids(tok.tokenize(w))[0]: 12.0 for w in WORDS}
    question = tok.convert_tokens_to_ids("?")
    newline = tok.convert_tokens_to_ids("Ċ")  # GPT-2's byte-level newline
    logits[question] = 12.0 + 1.1  # about 3x a word
    logits[newline] = 12.0 + 0.4  # about 1.5x a word
    width = model.config.n_embd
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.fill_(1.0)  # every position's final state: the all-ones vector
        for token_id, logit in logits.items():
            model.transformer.wte.weight[token_id] = logit / width  # tied head: logit = row . ones
    model.save_pretrained(path)
    return path


