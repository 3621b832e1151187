"""Schema migration, FAQ storage and conversation history, on SQLite and PostgreSQL."""

import pytest
import yaml
from pydantic import ValidationError
from sqlalchemy import delete as sql_delete
from sqlalchemy import inspect
from sqlalchemy.orm import Session

from core.conversation import service as conversation_service
from core.database import make_engine, upgrade_schema
from core.messages import IncomingMessage, Option, Reply
from knowledge import service
from knowledge.models import FaqEntry, FaqVersion
from knowledge.schemas import FaqIn
from tests.conftest import REPO

FAQ_DIR = REPO / "knowledge" / "data" / "faq"


def shipped_ids() -> list[str]:
    """The ids in the shipped FAQ files, read without the code under test."""
    ids: list[str] = []
    for path in sorted(FAQ_DIR.glob("*.yaml")):
        ids += [item["id"] for item in yaml.safe_load(path.read_text(encoding="utf-8"))]
    return ids


def faq(faq_id: str = "test_entry", **changes) -> FaqIn:
    values = {
        "id": faq_id,
        "category": "测试",
        "question": "发票开错了怎么办？",
        "alternates": ["开错票了咋办", "发票写错了"],
        "keywords": ["开错", "红冲"],
        "answer": "当月可作废，跨月请开红字发票。",
    }
    values.update(changes)
    return FaqIn(**values)


def as_input(entry: FaqEntry) -> FaqIn:
    return FaqIn.model_validate({"id": entry.id, **{k: getattr(entry, k) for k in service.EDITABLE}})


def entry_yaml(**changes) -> dict:
    return {**faq(**changes).model_dump()}


@pytest.fixture
def db_session(engine):
    with Session(engine) as session:
        yield session


@pytest.fixture
def seeded(db_session):
    assert service.seed_defaults(db_session=db_session) == len(shipped_ids())
    db_session.commit()
    return db_session


# --- schema ---------------------------------------------------------------------------------------------


def test_upgrade_schema_creates_tables_and_is_idempotent(database_url):
    eng = make_engine(database_url)
    try:
        assert upgrade_schema(eng) is True
        tables = set(inspect(eng).get_table_names())
        assert {"faq_entry", "conversation_turn", "alembic_version"} <= tables
        columns = {c["name"] for c in inspect(eng).get_columns("faq_entry")}
        assert {
            "id",
            "category",
            "question",
            "alternates",
            "keywords",
            "answer",
            "source",
            "enabled",
            "version",
            "created_at",
            "updated_at",
        } <= columns
        assert upgrade_schema(eng) is False
        assert upgrade_schema(eng) is False
    finally:
        eng.dispose()


def test_migrated_engine_needs_no_upgrade(engine):
    assert upgrade_schema(engine) is False


# --- seeding ---------------------------------------------------------------------------------------------


def test_seed_defaults_loads_shipped_entries_once(db_session):
    expected = shipped_ids()
    assert service.seed_defaults(db_session=db_session) == len(expected)
    db_session.commit()
    entries = service.get_all(db_session=db_session)
    assert len(expected) >= 110
    assert sorted(e.id for e in entries) == sorted(expected)
    assert all(e.version == 1 and e.enabled for e in entries)
    assert service.seed_defaults(db_session=db_session) == 0
    assert len(service.get_all(db_session=db_session)) == len(expected)


def test_an_upgrade_adds_new_shipped_entries_and_keeps_what_admins_did(db_session):
    """A base seeded by an older release gets the topics shipped since, and sources where it has none; an admin's
    own entry, edit and deletion stay as they are."""
    first, second, third, *_ = shipped_ids()
    service.seed_defaults(db_session=db_session)
    service.upsert(db_session=db_session, faq_in=faq())
    edited = as_input(service.get(db_session=db_session, faq_id=first))
    service.upsert(db_session=db_session, faq_in=edited.model_copy(update={"answer": "管理员改写的答案。"}))
    service.delete(db_session=db_session, faq_id=second)
    older = service.get(db_session=db_session, faq_id=third)
    shipped_source = older.source
    service.upsert(db_session=db_session, faq_in=as_input(older).model_copy(update={"source": ""}))
    newest = sorted(shipped_ids())[-1]
    db_session.execute(sql_delete(FaqVersion).where(FaqVersion.faq_id == newest))  # never held: shipped later
    db_session.execute(sql_delete(FaqEntry).where(FaqEntry.id == newest))
    db_session.commit()

    assert service.seed_defaults(db_session=db_session) == 1
    db_session.commit()
    assert service.get(db_session=db_session, faq_id=newest) is not None
    assert service.get(db_session=db_session, faq_id=first).answer == "管理员改写的答案。"
    assert service.get(db_session=db_session, faq_id=second) is None
    assert service.get(db_session=db_session, faq_id="test_entry") is not None
    assert service.get(db_session=db_session, faq_id=third).source == shipped_source != ""


def test_every_shipped_entry_names_the_rule_it_rests_on():
    missing = [e.id for e in service.default_entries() if len(e.source.strip()) < 6]
    assert missing == []


def test_seeded_content_matches_shipped_files(seeded):
    by_id = {e.id: e for e in service.get_all(db_session=seeded)}
    for path in sorted(FAQ_DIR.glob("*.yaml")):
        for item in yaml.safe_load(path.read_text(encoding="utf-8")):
            entry = by_id[item["id"]]
            assert entry.question == item["question"]
            assert entry.answer == item["answer"]
            assert entry.category == item["category"]


def test_get_all_orders_and_filters(seeded):
    entries = service.get_all(db_session=seeded)
    assert [(e.category, e.id) for e in entries] == sorted((e.category, e.id) for e in entries)
    service.upsert(db_session=seeded, faq_in=as_input(entries[0]).model_copy(update={"enabled": False}))
    seeded.commit()
    enabled = service.get_all(db_session=seeded, enabled_only=True)
    assert len(enabled) == len(entries) - 1
    assert entries[0].id not in {e.id for e in enabled}


# --- upsert, import, delete ------------------------------------------------------------------------------


def test_upsert_creates_then_bumps_version_on_change(db_session):
    entry, changed = service.upsert(db_session=db_session, faq_in=faq())
    db_session.commit()
    assert changed is True
    assert entry.version == 1
    before = service.signature(db_session=db_session)

    entry, changed = service.upsert(db_session=db_session, faq_in=faq(answer="请先作废，再重新开具。"))
    db_session.commit()
    assert changed is True
    assert entry.version == 2
    assert service.get(db_session=db_session, faq_id="test_entry").answer == "请先作废，再重新开具。"
    after = service.signature(db_session=db_session)
    assert after != before


def test_upsert_detects_list_changes(db_session):
    service.upsert(db_session=db_session, faq_in=faq())
    entry, changed = service.upsert(db_session=db_session, faq_in=faq(alternates=["开错票了咋办", "新说法"]))
    assert changed is True
    assert entry.version == 2
    assert entry.alternates == ["开错票了咋办", "新说法"]


def test_unchanged_upsert_keeps_version_and_signature(seeded):
    entry = service.get(db_session=seeded, faq_id="busy_server")
    before = service.signature(db_session=seeded)
    same, changed = service.upsert(db_session=seeded, faq_in=as_input(entry))
    seeded.commit()
    assert changed is False
    assert same.version == 1
    assert service.signature(db_session=seeded) == before


def test_changed_upsert_of_seeded_entry(seeded):
    entry = service.get(db_session=seeded, faq_id="busy_server")
    before = service.signature(db_session=seeded)
    updated, changed = service.upsert(
        db_session=seeded, faq_in=as_input(entry).model_copy(update={"answer": "请稍后重试，或联系12366。"})
    )
    seeded.commit()
    assert changed is True
    assert updated.version == 2
    assert service.signature(db_session=seeded) != before
    assert service.get(db_session=seeded, faq_id="busy_server").answer == "请稍后重试，或联系12366。"


def test_import_entries_counts(db_session):
    service.upsert(db_session=db_session, faq_in=faq("kept"))
    service.upsert(db_session=db_session, faq_in=faq("changed"))
    db_session.commit()
    counts = service.import_entries(
        db_session=db_session,
        entries=[faq("kept"), faq("changed", answer="新的答案内容"), faq("brand_new"), faq("another_new")],
    )
    db_session.commit()
    assert counts == {"created": 2, "updated": 1, "unchanged": 1}
    versions = {e.id: e.version for e in service.get_all(db_session=db_session)}
    assert versions == {"kept": 1, "changed": 2, "brand_new": 1, "another_new": 1}


def test_delete(seeded):
    assert service.delete(db_session=seeded, faq_id="busy_server") is True
    seeded.commit()
    assert service.get(db_session=seeded, faq_id="busy_server") is None
    assert len(service.get_all(db_session=seeded)) == len(shipped_ids()) - 1
    assert service.delete(db_session=seeded, faq_id="busy_server") is False
    assert service.delete(db_session=seeded, faq_id="no_such_entry") is False


def test_signature_changes_on_delete(seeded):
    before = service.signature(db_session=seeded)
    service.delete(db_session=seeded, faq_id="busy_server")
    seeded.commit()
    assert service.signature(db_session=seeded) != before


def test_signature_changes_when_an_entry_is_replaced(engine):
    """Deleting one entry and creating another (separate requests, same second) still changes the fingerprint."""
    with Session(engine) as s:
        s.execute(sql_delete(FaqEntry))
        service.upsert(db_session=s, faq_in=faq("first"))
        s.commit()
    with Session(engine) as s:
        before = service.signature(db_session=s)
    with Session(engine) as s:
        service.delete(db_session=s, faq_id="first")
        s.commit()
    with Session(engine) as s:
        service.upsert(db_session=s, faq_in=faq("replacement", answer="完全不同的答案"))
        s.commit()
    with Session(engine) as s:
        assert service.signature(db_session=s) != before


# --- YAML ------------------------------------------------------------------------------------------------


def test_yaml_round_trip_preserves_content(seeded):
    entries = service.get_all(db_session=seeded)
    text = service.to_yaml(entries)
    assert "服务器繁忙" in text  # written as readable Chinese, not escapes
    parsed = service.parse_yaml(text)
    assert [p.model_dump() for p in parsed] == [as_input(e).model_dump() for e in entries]
    counts = service.import_entries(db_session=seeded, entries=parsed)
    assert counts == {"created": 0, "updated": 0, "unchanged": len(entries)}


def test_to_yaml_includes_version(db_session):
    service.upsert(db_session=db_session, faq_in=faq())
    service.upsert(db_session=db_session, faq_in=faq(answer="改过的答案"))
    rows = yaml.safe_load(service.to_yaml(service.get_all(db_session=db_session)))
    assert rows == [{**faq(answer="改过的答案").model_dump(), "version": 2}]


def test_parse_yaml_accepts_a_valid_list():
    text = yaml.safe_dump([entry_yaml(faq_id="a_one"), entry_yaml(faq_id="a_two")], allow_unicode=True)
    assert [e.id for e in service.parse_yaml(text)] == ["a_one", "a_two"]
    assert service.parse_yaml("[]") == []


@pytest.mark.parametrize("text", ["id: x\nanswer: y\n", "just a string", "", "42"])
def test_parse_yaml_rejects_a_non_list(text):
    with pytest.raises(ValueError, match="list"):
        service.parse_yaml(text)


def test_parse_yaml_rejects_duplicate_ids():
    text = yaml.safe_dump(
        [entry_yaml(faq_id="dup_one"), entry_yaml(faq_id="unique"), entry_yaml(faq_id="dup_one")],
        allow_unicode=True,
    )
    with pytest.raises(ValueError, match="duplicate ids: dup_one"):
        service.parse_yaml(text)


@pytest.mark.parametrize("bad_id", ["Bad-Id", "1starts_with_digit", "has space", "中文", "x", "a" * 65])
def test_parse_yaml_rejects_bad_slug_id(bad_id):
    item = entry_yaml()
    item["id"] = bad_id
    with pytest.raises(ValidationError, match="slug"):
        service.parse_yaml(yaml.safe_dump([item], allow_unicode=True))


def test_parse_yaml_rejects_empty_answer():
    item = entry_yaml()
    item["answer"] = ""
    with pytest.raises(ValidationError) as info:
        service.parse_yaml(yaml.safe_dump([item], allow_unicode=True))
    assert [e["loc"] for e in info.value.errors()] == [("answer",)]
    assert isinstance(info.value, ValueError)  # callers catch ValueError


def test_parse_yaml_rejects_missing_fields():
    with pytest.raises(ValidationError, match="question"):
        service.parse_yaml("- id: lonely\n  category: x\n  answer: 只有答案\n")


def test_parse_yaml_rejects_a_non_mapping_item():
    with pytest.raises(ValueError):
        service.parse_yaml("- just text\n")


def test_parse_yaml_reports_syntax_errors_as_value_error():
    with pytest.raises(ValueError, match="YAML"):
        service.parse_yaml('- id: [unclosed\n  answer: "x\n')


# --- conversation history --------------------------------------------------------------------------------


def say(db_session: Session, channel: str, user_id: str, text: str, intent: str = "answer") -> None:
    conversation_service.record_turn(
        db_session=db_session,
        message=IncomingMessage(channel=channel, user_id=user_id, text=text),
        reply=Reply(text=f"回复：{text}", intent=intent, topic="busy_server", confidence=0.9),
    )


def test_record_turn_and_history(db_session):
    say(db_session, "wechat", "merchant-1", "你好", intent="greeting")
    say(db_session, "wechat", "merchant-2", "别人的问题")
    say(db_session, "web", "merchant-1", "另一个渠道")
    say(db_session, "wechat", "merchant-1", "开票提示服务器繁忙")
    say(db_session, "wechat", "merchant-1", "人工客服", intent="handoff")
    db_session.commit()

    history = conversation_service.get_history(db_session=db_session, channel="wechat", user_id="merchant-1")
    assert [t.text for t in history] == ["你好", "开票提示服务器繁忙", "人工客服"]
    assert [t.intent for t in history] == ["greeting", "answer", "handoff"]
    assert history[0].reply == "回复：你好"
    assert history[0].topic == "busy_server"
    assert history[0].confidence == pytest.approx(0.9)
    assert all(t.created_at is not None for t in history)

    assert [
        t.text for t in conversation_service.get_history(db_session=db_session, channel="web", user_id="merchant-1")
    ] == ["另一个渠道"]
    assert conversation_service.get_history(db_session=db_session, channel="web", user_id="merchant-2") == []


def test_history_limit_keeps_latest_oldest_first(db_session):
    for i in range(7):
        say(db_session, "terminal", "u", f"第{i}条")
    db_session.commit()
    history = conversation_service.get_history(db_session=db_session, channel="terminal", user_id="u", limit=3)
    assert [t.text for t in history] == ["第4条", "第5条", "第6条"]


def test_record_turn_renders_options_into_reply(db_session):
    reply = Reply(text="您想问哪一个？", intent="clarify", options=[Option("作废", "faq:a"), Option("红冲", "faq:b")])
    turn = conversation_service.record_turn(
        db_session=db_session, message=IncomingMessage(channel="web", user_id="u", text="开错了"), reply=reply
    )
    db_session.commit()
    assert turn.id is not None
    assert turn.topic is None and turn.confidence is None
    assert "1. 作废" in turn.reply and "2. 红冲" in turn.reply


def record_plain(db_session: Session, user_id: str, text: str) -> None:
    conversation_service.record_turn(
        db_session=db_session,
        message=IncomingMessage(channel="web", user_id=user_id, text=text),
        reply=Reply(text="收到", intent="fallback"),
    )


def test_record_turn_stores_text_with_nul(db_session):
    record_plain(db_session, "nul\x00user", "发票\x00号码")
    db_session.commit()
    history = conversation_service.get_history(db_session=db_session, channel="web", user_id="nul\ufffduser")
    assert [t.text for t in history] == ["发票\ufffd号码"]


def test_history_found_with_the_same_raw_user_id(db_session):
    record_plain(db_session, "nul\x00user", "你好")
    db_session.commit()
    history = conversation_service.get_history(db_session=db_session, channel="web", user_id="nul\x00user")
    assert [t.text for t in history] == ["你好"]
