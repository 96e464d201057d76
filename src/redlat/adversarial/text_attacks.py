"""Held-out attacks on a text classifier: perturbations that no defence was trained on.

Each attack takes texts with their true labels and reports, per text, whether the classifier is still right on
everything the attack tried (`AttackResult`). All of them are seeded and deterministic.

- Character noise (`char_attack`): several random variants of each text with typos (swapped, dropped, doubled or
  neighbouring-key letters), leetspeak digits, or look-alike letters from other Unicode scripts (homoglyphs). A text
  counts as robust only if the model is right on every variant.
- Word substitution (`word_substitution_attack`): a greedy black-box search in the spirit of TextFooler (Jin et al.
  2020). Words are ranked by how much deleting them lowers the true class's probability; the most important ones are
  then swapped, one at a time, for whichever nearby word in an embedding space lowers that probability most, until
  the prediction flips. `embedding_neighbours` supplies the nearby words from a (pretrained) embedding matrix.
- HotFlip (`hotflip_attack`, Ebrahimi et al. 2018): a white-box attack that uses the gradient of the loss with
  respect to the input embeddings to estimate, to first order, how much swapping any token for any other would raise
  the loss; the most promising swaps are checked with real forward passes and the best is kept.
- Paraphrase (`paraphrases`, `paraphrase_attack`): rewrites written once by a chat LM, then scored like any input.

Substitutes and HotFlip tokens are whole-word alphabetic tokens of a WordPiece vocabulary (BERT-style): never
special, `[unused]` or `##` continuation tokens.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from redlat.errors import ConfigError
from redlat.generation import derive_seed

if TYPE_CHECKING:
    from redlat.models.causal_lm import LoadedLM

Predict = Callable[[Sequence[str]], torch.Tensor]  # texts -> logits (N, classes), computed without gradients

CHAR_KINDS = ("typo", "leet", "homoglyph")

# Lower-case letter -> its leetspeak digit (upper-case letters use the same digit).
LEET: Mapping[str, str] = MappingProxyType(
    {"a": "4", "b": "8", "e": "3", "g": "9", "i": "1", "l": "1", "o": "0", "s": "5", "t": "7", "z": "2"}
)

# Latin letter -> look-alikes from other scripts, Cyrillic first, then Greek; one is drawn per replacement.
_CYRILLIC = dict(zip("acejiopsxyABCEHIKMOPTX", "\u0430\u0441\u0435\u0458\u0456\u043e\u0440\u0455\u0445\u0443"
                     "\u0410\u0412\u0421\u0415\u041d\u0406\u041a\u041c\u041e\u0420\u0422\u0425", strict=True))
_GREEK = dict(zip("ovABEHIKMNOPTXYZ", "\u03bf\u03bd\u0391\u0392\u0395\u0397\u0399\u039a\u039c\u039d\u039f"
                  "\u03a1\u03a4\u03a7\u03a5\u0396", strict=True))
HOMOGLYPHS: Mapping[str, str] = MappingProxyType(
    {letter: _CYRILLIC.get(letter, "") + _GREEK.get(letter, "") for letter in sorted({*_CYRILLIC, *_GREEK})}
)

_KEY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    """Each key of a QWERTY keyboard -> the keys touching it (each row sits half a key right of the one above)."""
    where = {key: (r, c) for r, row in enumerate(_KEY_ROWS) for c, key in enumerate(row)}
    near = {}
    for key, (r, c) in where.items():
        spots = [(r, c - 1), (r, c + 1), (r - 1, c), (r - 1, c + 1), (r + 1, c - 1), (r + 1, c)]
        near[key] = "".join(_KEY_ROWS[i][j] for i, j in spots if 0 <= i < len(_KEY_ROWS) and 0 <= j < len(_KEY_ROWS[i]))
    return near


KEYBOARD: Mapping[str, str] = MappingProxyType(_keyboard_neighbours())


@dataclass(frozen=True)
class AttackResult:
    """Per input: the adversarial text and whether the model withstood the attack; and the model queries spent."""

    texts: list[str]  # the adversarial text: one that fooled the model if the attack found one
    correct: list[bool]  # the model is right on every variant it was attacked with
    queries: int  # texts sent to the model (forward passes of single texts, for hotflip)

    @property
    def accuracy(self) -> float:
        """Share of inputs the model withstood (nan for no inputs)."""
        return sum(self.correct) / len(self.correct) if self.correct else math.nan


# -- character noise ----------------------------------------------------------------------------------------------


def perturb_chars(text: str, kind: str, rate: float, rng: random.Random) -> str:
    """`text` with a `rate` share of its eligible letters changed (at least one if it has any; none at rate 0).

    typo: any letter is swapped with the next letter, dropped, doubled or replaced by a neighbouring QWERTY key;
    leet: letters in LEET become digits; homoglyph: letters in HOMOGLYPHS become look-alikes from another script.
    leet and homoglyph keep the length; typo may not."""
    _check_kind(kind)
    _check_rate(rate)
    if kind == "typo":
        eligible = [i for i, ch in enumerate(text) if ch.isalpha()]
    elif kind == "leet":
        eligible = [i for i, ch in enumerate(text) if ch.lower() in LEET]
    else:
        eligible = [i for i, ch in enumerate(text) if ch in HOMOGLYPHS]
    count = min(len(eligible), max(1, round(rate * len(eligible)))) if eligible and rate > 0 else 0
    slots = list(text)  # one string per original character; an edit rewrites its slot
    consumed: set[int] = set()  # slots already moved by a swap
    for i in sorted(rng.sample(eligible, count)):
        if i in consumed:
            continue
        if kind == "typo":
            consumed |= _typo(slots, text, i, rng)
        elif kind == "leet":
            slots[i] = LEET[text[i].lower()]
        else:
            slots[i] = rng.choice(HOMOGLYPHS[text[i]])
    return "".join(slots)


def _typo(slots: list[str], text: str, i: int, rng: random.Random) -> set[int]:
    """Apply one typo at letter i (in place); returns the other slots it touched."""
    ch = text[i]
    ops = ["delete", "duplicate"]
    if i + 1 < len(text) and text[i + 1].isalpha() and text[i + 1] != ch:
        ops.append("swap")
    if ch.lower() in KEYBOARD:
        ops.append("key")
    op = rng.choice(ops)
    if op == "delete":
        slots[i] = ""
    elif op == "duplicate":
        slots[i] = ch * 2
    elif op == "swap":
        slots[i], slots[i + 1] = slots[i + 1], slots[i]
        return {i + 1}
    else:
        key = rng.choice(KEYBOARD[ch.lower()])
        slots[i] = key.upper() if ch.isupper() else key
    return set()


def char_attack(
    texts: Sequence[str],
    labels: Sequence[int],
    predict: Predict,
    *,
    kind: str,
    rate: float = 0.1,
    tries: int = 5,
    seed: int = 0,
    batch_size: int = 64,
) -> AttackResult:
    """`tries` independent character-noise variants per text (see perturb_chars), all sent through `predict` in
    batches; a text counts as correct only if the model is right on every variant."""
    _check_kind(kind)
    _check_rate(rate)
    if tries < 1:
        raise ConfigError(f"tries must be at least 1, not {tries}")
    gold = _labels(texts, labels)
    variants = []
    for index, text in enumerate(texts):
        rng = random.Random(derive_seed(seed, index))
        variants.append([perturb_chars(text, kind, rate, rng) for _ in range(tries)])
    flat = [v for per_text in variants for v in per_text]
    predicted = _probabilities(predict, flat, batch_size).argmax(dim=1).tolist()
    out_texts, correct = [], []
    for index, (per_text, label) in enumerate(zip(variants, gold, strict=True)):
        right = [p == label for p in predicted[index * tries : (index + 1) * tries]]
        fooled = [v for v, r in zip(per_text, right, strict=True) if not r]
        out_texts.append(fooled[0] if fooled else per_text[-1])
        correct.append(all(right))
    return AttackResult(out_texts, correct, len(flat))


# -- word substitution --------------------------------------------------------------------------------------------


def _word_token_ids(tokenizer: Any, limit: int) -> list[int]:
    """Ids below `limit` of whole-word alphabetic tokens: no special, [unused], '##' or punctuation tokens."""
    special = set(tokenizer.all_special_ids)
    return sorted(i for tok, i in tokenizer.get_vocab().items() if i < limit and i not in special and tok.isalpha())


def embedding_neighbours(tokenizer: Any, embeddings: torch.Tensor, *, k: int = 8) -> Callable[[str], list[str]]:
    """A function word -> up to k substitutes: the whole-word alphabetic tokens nearest (by cosine similarity of
    their rows of `embeddings`, vocab x dim) to the word's token, nearest first, never the word itself.

    A word gets substitutes only if the tokenizer turns it into a single whole-word alphabetic token; else []. Pass
    the pretrained model's input embeddings so the substitutes do not depend on the model under attack."""
    if k < 1:
        raise ConfigError(f"k must be at least 1, not {k}")
    ids = _word_token_ids(tokenizer, embeddings.shape[0])
    tokens = tokenizer.convert_ids_to_tokens(ids)
    row_of = {token_id: row for row, token_id in enumerate(ids)}
    vocab = tokenizer.get_vocab()
    unit = F.normalize(embeddings.detach().float().cpu(), dim=1)
    table = unit[ids]  # (words, dim)
    cache: dict[str, list[str]] = {}

    def nearest(word: str) -> list[str]:
        pieces = tokenizer.tokenize(word)
        token_id = vocab.get(pieces[0]) if len(pieces) == 1 else None
        if token_id not in row_of or len(ids) < 2:
            return []
        similarity = table @ unit[token_id]
        similarity[row_of[token_id]] = -math.inf
        top = similarity.topk(min(k, len(ids) - 1)).indices.tolist()
        return [tokens[row] for row in top]

    def neighbours(word: str) -> list[str]:
        if word not in cache:
            cache[word] = nearest(word)
        return list(cache[word])

    return neighbours


def _split_word(word: str) -> tuple[str, str, str]:
    """(leading punctuation, core, trailing punctuation)."""
    match = re.fullmatch(r"(\W*)(.*?)(\W*)", word, flags=re.DOTALL)
    assert match is not None  # the pattern matches any string
    return match.group(1), match.group(2), match.group(3)


def _match_case(original: str, substitute: str) -> str:
    if len(original) > 1 and original.isupper():
        return substitute.upper()
    return substitute[:1].upper() + substitute[1:] if original[:1].isupper() else substitute


def word_substitution_attack(
    texts: Sequence[str],
    labels: Sequence[int],
    predict: Predict,
    *,
    neighbours: Callable[[str], list[str]],
    max_words: int = 3,
    seed: int = 0,
    batch_size: int = 64,
) -> AttackResult:
    """Greedy black-box word substitution (TextFooler-like, Jin et al. 2020).

    Words (whitespace-separated, leading/trailing punctuation kept in place) that have substitutes are ranked by the
    drop in the true class's probability when each is deleted (ties broken by a shuffle seeded from (seed, index)).
    For up to `max_words` of them, most important first, every substitute is tried in one batch and the one that
    lowers the true-class probability most is kept (none if none lowers it); the search stops once the prediction is
    wrong. Texts the model gets wrong to begin with are left as they are."""
    if max_words < 0:
        raise ConfigError(f"max_words must not be negative, not {max_words}")
    gold = _labels(texts, labels)
    clean = _probabilities(predict, list(texts), batch_size)
    queries = len(texts)
    out_texts, correct = [], []
    for index, (text, label) in enumerate(zip(texts, gold, strict=True)):
        if int(clean[index].argmax()) != label:
            out_texts.append(text)
            correct.append(False)
            continue
        rng = random.Random(derive_seed(seed, index))
        adversarial, right, used = _substitute(text, label, float(clean[index, label]), predict, neighbours,
                                               max_words, rng, batch_size)
        out_texts.append(adversarial)
        correct.append(right)
        queries += used
    return AttackResult(out_texts, correct, queries)


def _substitute(
    text: str,
    label: int,
    p_true: float,
    predict: Predict,
    neighbours: Callable[[str], list[str]],
    max_words: int,
    rng: random.Random,
    batch_size: int,
) -> tuple[str, bool, int]:
    """One text's greedy search: (adversarial text, still right, queries)."""
    parts = re.split(r"(\s+)", text)  # words at even indices, the whitespace between them at odd ones
    words = {j: _split_word(parts[j]) for j in range(0, len(parts), 2)}
    options = {}
    for j, (_, core, _) in words.items():
        subs = [s for s in dict.fromkeys(neighbours(core)) if s and s.lower() != core.lower()] if core else []
        if subs:
            options[j] = subs
    if not options or max_words == 0:
        return text, True, 0

    def joined(changes: dict[int, str]) -> str:
        return "".join(changes.get(j, part) for j, part in enumerate(parts))

    slots = list(options)
    rng.shuffle(slots)
    deleted = [joined({j: words[j][0] + words[j][2]}) for j in slots]
    drops = p_true - _probabilities(predict, deleted, batch_size)[:, label]
    queries = len(deleted)
    ranked = sorted(range(len(slots)), key=lambda n: -float(drops[n]))  # stable: ties keep the seeded order
    changes: dict[int, str] = {}
    for n in ranked[:max_words]:
        j = slots[n]
        lead, core, trail = words[j]
        candidates = [lead + _match_case(core, s) + trail for s in options[j]]
        probs = _probabilities(predict, [joined({**changes, j: c}) for c in candidates], batch_size)
        queries += len(candidates)
        wrong = probs.argmax(dim=1) != label
        p = probs[:, label]
        best = int((p - 2.0 * wrong.float()).argmin())  # a candidate that fools the model beats any that does not
        if bool(wrong[best]) or float(p[best]) < p_true:
            changes[j], p_true = candidates[best], float(p[best])
            if bool(wrong[best]):
                return joined(changes), False, queries
    return joined(changes), True, queries


# -- HotFlip ------------------------------------------------------------------------------------------------------


def hotflip_attack(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    flips: int = 3,
    candidates: int = 10,
    max_length: int = 64,
    batch_size: int = 32,
) -> AttackResult:
    """White-box gradient-guided token flips (HotFlip, Ebrahimi et al. 2018) on a sequence classifier.

    Each flip ranks every (position, token) swap by its first-order gain in cross-entropy, (E[v] - E[x_i]) . grad_i
    with E the input embedding matrix, checks the `candidates` best with real forward passes and keeps the best one
    (one that fools the model first, else the highest loss; none if none raises the loss); up to `flips` flips per
    text, stopping once the model is wrong. Only real, non-special tokens are flipped, never one followed by a '##'
    piece, and only whole-word alphabetic tokens are put in, so the decoded text tokenises back to the flipped ids.
    Texts are truncated to `max_length` tokens. `queries` counts single-text forward passes (gradient passes and
    candidate checks). The model runs in eval mode on its own device; its mode and parameters' requires_grad flags
    are restored afterwards, whatever happens. Memory per batch: about batch_size x max_length x vocab floats."""
    if flips < 0 or candidates < 1 or batch_size < 1:
        raise ConfigError("flips must not be negative; candidates and batch_size must be at least 1")
    gold = _labels(texts, labels)
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        flipper = _HotFlip(model, tokenizer, flips, candidates, batch_size)
        out_texts: list[str] = []
        correct: list[bool] = []
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start : start + batch_size])
            enc = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            ids, right = flipper.attack(enc, torch.tensor(gold[start : start + batch_size]))
            out_texts += tokenizer.batch_decode(ids.cpu(), skip_special_tokens=True)
            correct += right.tolist()
        return AttackResult(out_texts, correct, flipper.queries)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


class _HotFlip:
    """The state one hotflip_attack call shares across batches: the embedding table, the tokens that may be put in,
    and the forward passes spent."""

    def __init__(self, model: nn.Module, tokenizer: Any, flips: int, candidates: int, batch_size: int) -> None:
        self.model, self.flips, self.candidates, self.batch_size = model, flips, candidates, batch_size
        self.embed = model.get_input_embeddings()
        self.table = self.embed.weight.detach().float()  # (vocab, dim)
        self.device = self.table.device
        vocab_size = self.table.shape[0]
        self.allowed = torch.zeros(vocab_size, dtype=torch.bool, device=self.device)
        self.allowed[_word_token_ids(tokenizer, vocab_size)] = True
        self.piece = torch.zeros(vocab_size, dtype=torch.bool, device=self.device)  # '##' continuations
        pieces = [i for tok, i in tokenizer.get_vocab().items() if i < vocab_size and tok.startswith("##")]
        self.piece[pieces] = True
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)), device=self.device)
        self.queries = 0

    def attack(self, enc: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(flipped ids, still right) for one tokenised batch."""
        ids = enc["input_ids"].to(self.device).clone()
        extra = {k: v.to(self.device) for k, v in enc.items() if k != "input_ids"}
        labels = labels.to(self.device)
        mask = extra.get("attention_mask", torch.ones_like(ids)).bool() & ~torch.isin(ids, self.special)
        mask[:, :-1] &= ~self.piece[ids[:, 1:]]  # flipping the start of a split word would change its other pieces
        right = torch.ones(len(ids), dtype=torch.bool, device=self.device)
        rows = torch.arange(len(ids), device=self.device)
        for flip in range(self.flips + 1):
            if rows.numel() == 0:
                break
            sub = {k: v[rows] for k, v in extra.items()}
            loss, grad, wrong = self._gradient(ids[rows], sub, labels[rows])
            if flip == 0:  # the clean pass: texts already misclassified need no attack
                right[rows[wrong]] = False
                keep = ~wrong
                rows, loss, grad, sub = rows[keep], loss[keep], grad[keep], {k: v[keep] for k, v in sub.items()}
            if flip == self.flips or rows.numel() == 0:
                break
            improved, fooled = self._flip(ids, rows, sub, labels[rows], loss, grad, mask[rows])
            right[rows[fooled]] = False
            rows = rows[improved & ~fooled]
        return ids, right

    def _gradient(
        self, ids: torch.Tensor, extra: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per text: loss, its gradient w.r.t. the input embeddings, and whether the model is wrong."""
        with torch.enable_grad():
            embeds = self.embed(ids).detach().requires_grad_(True)
            logits = self.model(inputs_embeds=embeds, **extra).logits.float()
            loss = F.cross_entropy(logits, labels, reduction="none")
            (grad,) = torch.autograd.grad(loss.sum(), embeds)
        self.queries += len(ids)
        return loss.detach(), grad.float(), logits.detach().argmax(dim=1) != labels

    def _flip(
        self,
        ids: torch.Tensor,
        rows: torch.Tensor,
        extra: dict[str, torch.Tensor],
        labels: torch.Tensor,
        loss: torch.Tensor,
        grad: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Try the best first-order flips of each row and apply the best real one to `ids` (in place) where it
        raises the loss or fools the model. Returns (flipped, fooled) per row."""
        current = ids[rows]  # (R, T)
        gain = grad @ self.table.T - (grad * self.table[current]).sum(dim=-1, keepdim=True)  # (R, T, V)
        gain[~mask] = -math.inf
        gain[:, :, ~self.allowed] = -math.inf
        gain.scatter_(2, current.unsqueeze(-1), -math.inf)  # a token for itself is no flip
        width = gain.shape[2]
        top = gain.flatten(1).topk(min(self.candidates, gain[0].numel()), dim=1)  # (R, C)
        valid = torch.isfinite(top.values)
        row, col = valid.nonzero(as_tuple=True)
        position, token = top.indices[row, col] // width, top.indices[row, col] % width
        trial = current[row].clone()
        trial[torch.arange(len(row), device=self.device), position] = token
        trial_loss, trial_wrong = self._evaluate(trial, {k: v[row] for k, v in extra.items()}, labels[row])
        score = torch.full(valid.shape, -math.inf, device=self.device)
        score[row, col] = trial_loss + torch.where(trial_wrong, 1e9, 0.0)  # fooling first, then the loss
        wrong = torch.zeros(valid.shape, dtype=torch.bool, device=self.device)
        wrong[row, col] = trial_wrong
        best_score, best = score.max(dim=1)
        picked = wrong.gather(1, best[:, None]).squeeze(1)
        flipped = torch.isfinite(best_score) & (picked | (best_score > loss))
        chosen = top.indices.gather(1, best[:, None]).squeeze(1)
        for r in flipped.nonzero().squeeze(1).tolist():
            ids[rows[r], int(chosen[r]) // width] = int(chosen[r]) % width
        return flipped, flipped & picked

    def _evaluate(
        self, ids: torch.Tensor, extra: dict[str, torch.Tensor], labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per text: loss and whether the model is wrong, by forward passes without gradients."""
        losses, wrong = [], []
        with torch.no_grad():
            for start in range(0, len(ids), self.batch_size):
                part = slice(start, start + self.batch_size)
                logits = self.model(input_ids=ids[part], **{k: v[part] for k, v in extra.items()}).logits.float()
                losses.append(F.cross_entropy(logits, labels[part], reduction="none"))
                wrong.append(logits.argmax(dim=1) != labels[part])
        self.queries += len(ids)
        if not losses:
            return torch.zeros(0, device=self.device), torch.zeros(0, dtype=torch.bool, device=self.device)
        return torch.cat(losses), torch.cat(wrong)


# -- paraphrase ---------------------------------------------------------------------------------------------------

# A system turn and the text as the user's turn: of the prompts tried on SmolLM2-135M-Instruct (an instruction before
# the text, a one-shot example), the others made it comment on the text or echo the instruction more often.
PARAPHRASE_REQUEST = "You paraphrase tweets: same meaning and tone, different words."
PARAPHRASE_TOP_P = 0.9
PARAPHRASE_TEMPERATURE = 0.7
_ECHOES = ("rewrite this", "re-write", "paraphrase", "you paraphrase", "here is")  # the request said back
_QUOTES = "\"'`\u201c\u201d\u2018\u2019\u00ab\u00bb"


def paraphrases(
    texts: Sequence[str], lm: LoadedLM, *, seed: int = 0, max_new_tokens: int = 48, batch_size: int = 16
) -> list[str]:
    """One rewrite per text by a chat LM (nucleus sampling, top-p PARAPHRASE_TOP_P at temperature
    PARAPHRASE_TEMPERATURE, cut at the first newline), with surrounding quotes and whitespace stripped; a rewrite that
    is not `usable_rewrite` falls back to the original text. The same seed gives the same rewrites."""
    from redlat.generation import Sampler, SamplingSettings

    if not lm.has_chat_template:
        raise ConfigError(f"paraphrasing needs a chat model; {lm.name!r} has no chat template")
    prompts = [
        lm.tokenizer.apply_chat_template(
            [{"role": "system", "content": PARAPHRASE_REQUEST}, {"role": "user", "content": text}],
            add_generation_prompt=True, tokenize=False,
        )
        for text in texts
    ]
    settings = SamplingSettings(
        top_p=PARAPHRASE_TOP_P, temperature=PARAPHRASE_TEMPERATURE, max_new_tokens=max_new_tokens, stop_at_newline=True
    )
    raw = Sampler(lm, settings, batch_size=batch_size).sample(prompts, seed=seed, add_special_tokens=False)
    cleaned = [r.strip().strip(_QUOTES).strip() for r in raw]
    return [rewrite if usable_rewrite(rewrite) else text for rewrite, text in zip(cleaned, texts, strict=True)]


def usable_rewrite(rewrite: str) -> bool:
    """A rewrite worth scoring: not empty, not an echo of the request, not a loop of the same few words."""
    lowered = rewrite.lower()
    words = lowered.split()
    if not words or lowered.startswith(_ECHOES) or PARAPHRASE_REQUEST.lower() in lowered:
        return False
    return len(words) < 8 or len(set(words)) >= 0.4 * len(words)


def paraphrase_attack(
    texts: Sequence[str], labels: Sequence[int], predict: Predict, rewrites: Sequence[str]
) -> AttackResult:
    """The model's accuracy on given rewrites of `texts` (written once by `paraphrases`, reused for every model)."""
    gold = _labels(texts, labels)
    if len(rewrites) != len(texts):
        raise ConfigError(f"{len(rewrites)} rewrites for {len(texts)} texts")
    predicted = _probabilities(predict, list(rewrites), 64).argmax(dim=1).tolist()
    return AttackResult(list(rewrites), [p == y for p, y in zip(predicted, gold, strict=True)], len(rewrites))


# -- shared helpers -----------------------------------------------------------------------------------------------


def _check_kind(kind: str) -> None:
    if kind not in CHAR_KINDS:
        raise ConfigError(f"unknown character perturbation {kind!r}; choose one of {', '.join(CHAR_KINDS)}")


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise ConfigError(f"rate must be in [0, 1], not {rate}")


def _labels(texts: Sequence[str], labels: Sequence[int]) -> list[int]:
    gold = [int(y) for y in labels]
    if len(gold) != len(texts):
        raise ConfigError(f"{len(texts)} texts but {len(gold)} labels")
    return gold


def _probabilities(predict: Predict, texts: Sequence[str], batch_size: int) -> torch.Tensor:
    """Class probabilities (N, classes) on the CPU, `batch_size` texts per predict call."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, not {batch_size}")
    chunks = [
        torch.softmax(predict(texts[start : start + batch_size]).detach().float().cpu(), dim=-1)
        for start in range(0, len(texts), batch_size)
    ]
    return torch.cat(chunks) if chunks else torch.zeros(0, 1)
