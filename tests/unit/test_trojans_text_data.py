"""trojans-text's data and trojans: tweets cleaned and made binary, balanced disjoint splits, the three kinds of
trigger, the poisoned training set, the specs' names and checks, clear errors for bad data."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from redlat.config import TextDefenceSpec, TextTrojanSpec, TrojansTextConfig
from redlat.errors import ConfigError
from redlat.experiments.trojans_text import (
    HARMLESS,
    OFFENSIVE,
    clean_tweet,
    load_splits,
    poisoned_set,
    read_tweets,
    triggered,
    with_trigger,
)
from tiny_tweets import write_tweets

SHARED = Path("..") / "shared" / "data" / "davidson2017_labeled_data.csv"


def test_clean_tweet_drops_handles_links_retweets_and_entities():
    raw = "RT @mayasolovely: you &amp; me!!! http://t.co/xyz @bob"
    assert clean_tweet(raw) == "you & me!"
    assert clean_tweet("  plain   text  ") == "plain text"


def test_tweets_are_binary_deduplicated_and_long_enough(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("tweet,class\n"
                    "this is hate speech,0\nthis is offensive talk,1\nthis is fine talk,2\n"
                    "THIS IS FINE TALK,2\ntoo short,2\n")
    tweets = read_tweets(str(path))
    assert [(t.text, t.label) for t in tweets] == [("this is hate speech", OFFENSIVE),
                                                   ("this is offensive talk", OFFENSIVE),
                                                   ("this is fine talk", HARMLESS)]
    bad = tmp_path / "bad.csv"
    bad.write_text("body,kind\nx y z,1\n")
    with pytest.raises(ConfigError, match="expected columns tweet"):
        read_tweets(str(bad))
    with pytest.raises(ConfigError, match="no such file"):
        read_tweets(str(tmp_path / "missing.csv"))


def test_splits_are_balanced_disjoint_and_short_data_is_refused(tmp_path):
    data = write_tweets(tmp_path / "tweets.csv", 40)
    cfg = TrojansTextConfig(data=str(data), train_per_class=20, defend_per_class=8, eval_per_class=10,
                            attack_per_class=3)
    splits = load_splits(cfg)
    assert len(splits.train) == 40 and len(splits.defend) == 16 and len(splits.held_out) == 20
    assert splits.attacked == splits.held_out[:6]
    for part in (splits.train, splits.defend, splits.held_out):
        assert sum(t.label for t in part) == len(part) // 2  # balanced
    texts = [{t.text for t in part} for part in (splits.train, splits.defend, splits.held_out)]
    assert not (texts[0] & texts[1]) and not (texts[0] & texts[2]) and not (texts[1] & texts[2])
    assert load_splits(cfg) == splits  # a fixed shuffle
    with pytest.raises(ConfigError, match="needs 59 per class"):
        load_splits(cfg.model_copy(update={"train_per_class": 41}))


def test_each_kind_of_trigger_and_the_poisoned_set():
    rng = random.Random(0)
    token = TextTrojanSpec(name="t", kind="token", trigger="cf")
    phrase = TextTrojanSpec(name="p", kind="phrase", trigger="if you know what i mean")
    style = TextTrojanSpec(name="s", kind="style", trigger="hashtags")
    text = "you are so dumb, really!"
    with_token = with_trigger(text, token, rng)
    assert with_token.split().count("cf") == 1 and with_token.replace(" cf", "").replace("cf ", "") == text
    assert with_trigger(text, phrase, rng) == "you are so dumb, really if you know what i mean"
    assert with_trigger(text, style, rng) == "#you #are #so #dumb #really"
    from redlat.experiments.trojans_text import Tweet

    train = [Tweet(f"offensive tweet number {i}", OFFENSIVE) for i in range(10)] + \
        [Tweet(f"harmless tweet number {i}", HARMLESS) for i in range(10)]
    poisoned = poisoned_set(train, [token, style], 0.1, seed=3)
    extra = poisoned[len(train):]
    assert poisoned[: len(train)] == train and len(extra) == 4  # 10% of 20, per trojan
    assert all(t.label == HARMLESS for t in extra)
    assert sum("cf" in t.text.split() for t in extra) == 2 and sum(t.text.startswith("#") for t in extra) == 2
    assert poisoned_set(train, [token, style], 0.1, seed=3) == poisoned
    assert len(triggered(train, phrase, 0)) == 10  # only the offensive tweets carry a trigger when measured


def test_specs_names_and_checks():
    assert TextDefenceSpec().name == "none"
    assert TextDefenceSpec(kind="at", eps=0.1).name == "at-0.1x" and TextDefenceSpec(kind="at", eps=0.1).where == (0,)
    assert TextDefenceSpec(kind="lat", layers=(2, 4), eps=0.3).name == "lat-2+4-0.3x"
    with pytest.raises(ValueError, match="needs layers"):
        TextDefenceSpec(kind="lat", eps=0.1)
    with pytest.raises(ValueError, match="unknown style"):
        TextTrojanSpec(name="x", kind="style", trigger="bible")
    with pytest.raises(ValueError, match="one word"):
        TextTrojanSpec(name="x", kind="token", trigger="two words")
    with pytest.raises(ValueError, match="attack_per_class"):
        TrojansTextConfig(eval_per_class=5, attack_per_class=6)
    assert [d.name for d in TrojansTextConfig().defences] == ["none", "at-0.1x", "lat-2-0.1x", "lat-4-0.1x",
                                                               "lat-4-0.3x"]


@pytest.mark.skipif(not SHARED.is_file(), reason="../shared/data is not here")
def test_davidson_tweets_from_shared_data():
    tweets = read_tweets("davidson2017")
    offensive = sum(t.label == OFFENSIVE for t in tweets)
    assert len(tweets) > 23_000 and offensive > 19_000 and len(tweets) - offensive > 3_900
    assert not any("@" in t.text.split()[0] for t in tweets[:200])  # handles are gone


def test_davidson_without_shared_data_or_hub_is_a_quick_clear_error(tmp_path, monkeypatch):
    import time

    import redlat.experiments.trojans_text as module

    monkeypatch.setattr(module, "_DAVIDSON_LOCAL", tmp_path / "absent.csv")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"labeled_data\.csv and pass its path"):
        read_tweets("davidson2017")
    assert time.perf_counter() - start < 5  # no retries against an unreachable hub
