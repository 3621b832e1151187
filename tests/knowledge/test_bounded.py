"""Bounded matcher work: long messages are matched on a cut excerpt (and still find their question), the re-ranker
reads at most RERANK_MAX_CHARS characters and steps aside when busy, and an FAQ rebuild runs in the background while
the old matcher keeps answering."""

import hashlib
import threading
import time

import numpy as np
import pytest

from bot.bootstrap import prepare_database
from core.database import get_engine, session_scope
from core.limits import EXCERPT_CHARS, MATCH_MAX_CHARS, RERANK_MAX_CHARS
from knowledge import service
from knowledge.excerpt import excerpt
from knowledge.live import LiveKnowledge
from knowledge.matcher import Matcher, RerankGate, load_lexicon
from knowledge.schemas import FaqIn
from tests.conftest import clear_process_caches

QUESTION = "开普通发票一定要填购买方税号吗？"  # buyer_taxid_required in the shipped FAQ
ANGRY = (
    "我真的要气死了，你们这个系统太差劲了！我们店开了三年了，一直用你们的系统开发票，从来没遇到这么离谱的事。"
    "客户在前台等着，老板在旁边一直催，我急得满头大汗。打了好几次客服电话都没人接，排队排了半个小时。"
)


class FakeEmbedder:
    """Deterministic pseudo-random unit vectors; remembers every message it was asked to encode."""

    def __init__(self) -> None:
        self.queried: list[str] = []

    def _vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha1(text.encode()).digest()[:4], "big")
        vector = np.random.default_rng(seed).standard_normal(32).astype(np.float32)
        return vector / np.linalg.norm(vector)

    def queries(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts])

    def passages(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts])

    def query(self, text: str) -> np.ndarray:
        self.queried.append(text)
        return self._vector(text)


@pytest.fixture(scope="module")
def lexical_matcher() -> Matcher:
    return Matcher(service.shipped_topics(), lexicon=load_lexicon())


@pytest.fixture
def fake_matcher() -> Matcher:
    return Matcher(service.shipped_topics(), lexicon=load_lexicon(), embedder=FakeEmbedder())


def long_story(question: str, chars: int) -> str:
    """A rant of about `chars` characters with the question in it (within the first MATCH_MAX_CHARS characters)."""
    rant = ANGRY * (chars // len(ANGRY) + 1)
    before = min(chars // 2, MATCH_MAX_CHARS - 2 * len(question))
    return f"{rant[:before]}{question}{rant[: chars - before]}"


def test_a_20000_character_message_reaches_the_matcher_and_reranker_only_cut(fake_matcher, monkeypatch):
    seen: list[str] = []
    prepare = fake_matcher.prepare
    monkeypatch.setattr(fake_matcher, "prepare", lambda text: seen.append(text) or prepare(text))
    text = "票有问题，" + "我也说不清楚到底怎么回事" * 2000  # vague: the lexical stage cannot settle it
    assert len(text) > 20000
    result = fake_matcher.match(text)
    assert result.reranked  # the re-ranker ran, on the excerpt
    assert seen and max(len(t) for t in seen) <= EXCERPT_CHARS <= MATCH_MAX_CHARS
    assert fake_matcher.embedder.queried and max(len(t) for t in fake_matcher.embedder.queried) <= RERANK_MAX_CHARS


def test_short_messages_are_matched_whole(fake_matcher, monkeypatch):
    seen: list[str] = []
    prepare = fake_matcher.prepare
    monkeypatch.setattr(fake_matcher, "prepare", lambda text: seen.append(text) or prepare(text))
    fake_matcher.match(QUESTION)
    assert seen == [QUESTION]


@pytest.mark.parametrize("chars", [300, 1200, 20000])
def test_a_long_angry_story_around_a_known_question_still_gets_its_answer(lexical_matcher, chars):
    result = lexical_matcher.match(long_story(QUESTION, chars))
    assert (result.outcome, result.topic) == ("answer", "buyer_taxid_required")


def test_the_excerpt_keeps_pasted_error_text_and_questions():
    story = ANGRY + "开票的时候提示“购买方税号不正确”，这是怎么回事？" + ANGRY
    kept = excerpt(story, lexicon=load_lexicon())
    assert len(kept) <= EXCERPT_CHARS
    assert "购买方税号不正确" in kept and "气死" not in kept


def test_the_reranker_is_skipped_when_its_slots_are_busy(fake_matcher):
    fake_matcher.gate = gate = RerankGate(concurrency=1, wait_seconds=0.01)
    vague = "票有问题"
    assert fake_matcher.match(vague).reranked  # a slot is free: re-ranked
    fake_matcher.embedder.queried.clear()
    assert gate.acquire()  # another message holds the only slot
    try:
        started = time.monotonic()
        busy = fake_matcher.match(vague)
        assert time.monotonic() - started < 1.0
    finally:
        gate.release()
    assert not busy.reranked and fake_matcher.embedder.queried == []
    assert busy.outcome in ("answer", "clarify", "not_sure") and gate.skipped == 1
    assert fake_matcher.match(vague).reranked  # free again


def test_the_gate_admits_at_most_its_concurrency():
    gate = RerankGate(concurrency=2, wait_seconds=0)
    assert gate.acquire() and gate.acquire()
    assert not gate.acquire()
    gate.release()
    assert gate.acquire()


# --- background rebuilds ------------------------------------------------------------------------------------


@pytest.fixture
def kdb(app_env, monkeypatch):
    """A fresh, migrated database of each kind with the shipped FAQ."""
    monkeypatch.setenv("MATCHER_EMBEDDINGS", "false")
    clear_process_caches()
    prepare_database()
    yield app_env
    get_engine().dispose()


class SlowKnowledge(LiveKnowledge):
    """Rebuilds wait for `release` (the first build does not); counts the builds."""

    def __init__(self) -> None:
        super().__init__(None, refresh_seconds=0)
        self.release = threading.Event()
        self.builds: list[tuple] = []

    def _build(self, rows):
        if self.builds:
            assert self.release.wait(30)
        self.builds.append(rows.signature)
        return super()._build(rows)


def add_entry(n: int) -> None:
    faq_in = FaqIn(
        id=f"print_blank_{n}", category="测试", question=f"发票打印出来是空白的第{n}种", answer="请检查打印机。"
    )
    with session_scope() as db_session:
        service.upsert(db_session=db_session, faq_in=faq_in)


def test_the_old_matcher_answers_while_a_rebuild_runs_and_rebuilds_coalesce(kdb):
    live = SlowKnowledge()
    with session_scope() as db_session:
        first = live.current(db_session=db_session)
    for n in range(3):  # an import in three commits while the first rebuild is stuck
        add_entry(n)
        with session_scope() as db_session:
            started = time.monotonic()
            serving = live.current(db_session=db_session)
            assert time.monotonic() - started < 1.0  # chat does not wait for the rebuild
        assert serving is first and serving.matcher.match("跨月的发票怎么作废").topic == "void_cross_month"
    assert live.rebuilding
    live.release.set()
    with session_scope() as db_session:
        latest = service.signature(db_session=db_session)
    final = live.wait(latest, 30)
    assert final.signature == latest and "print_blank_2" in final.entries
    assert len(live.builds) <= 3  # the first build, the stuck one, and one for everything that came meanwhile


def test_an_faq_write_waits_for_its_rebuild(kdb):
    live = LiveKnowledge(None, refresh_seconds=60)
    with session_scope() as db_session:
        live.current(db_session=db_session)
    add_entry(9)
    snapshot = live.refresh(wait_seconds=30)
    assert snapshot is not None and "print_blank_9" in snapshot.entries
