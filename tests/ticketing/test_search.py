"""The queue's search box on each database: a ticket is found by a word of its merchant's messages, the merchant's
name, a full taxpayer id, or an invoice number in its messages or context; the index follows edits and deletes."""

import pytest
from sqlalchemy import inspect, text

from bot.bootstrap import prepare_database
from core.database import get_engine, session_scope
from merchants import service as merchant_service
from ticketing import handoff as ticket_handoff
from ticketing import queue, search
from ticketing.models import TicketMessage

TAX_ID = "91110108MA01ABCD5T"
OTHER_TAX_ID = "91110000600037341L"
NUMBER = "25112000000012345678"


@pytest.fixture
def sdb(app_env):
    """The application on a fresh, migrated database of each kind."""
    prepare_database()
    yield app_env
    get_engine().dispose()


def open_ticket(user_id: str, text: str, **kwargs) -> int:
    with session_scope() as db_session:
        return ticket_handoff.open_for_handoff(
            db_session=db_session, channel="wechat", user_id=user_id, text=text, **kwargs
        ).ticket.id


def found(needle: str) -> list[int]:
    with session_scope() as db_session:
        return sorted(item.ticket.id for item in queue.list_queue(db_session=db_session, states=None, search=needle))


def test_search_finds_tickets_by_message_merchant_tax_id_and_invoice_number(sdb):
    with session_scope() as db_session:
        lucky = merchant_service.create(db_session=db_session, name="北京好运商贸有限公司", tax_ids=[TAX_ID]).id
        merchant_service.create(db_session=db_session, name="上海顺达物流有限公司", tax_ids=[OTHER_TAX_ID])
    quota = open_ticket("s1", "转人工，开票一直提示可用授信额度不足", merchant_id=lucky)
    printer = open_ticket("s2", f"发票 {NUMBER} 交付失败了，买方说没收到邮件")
    recorded = open_ticket("s3", "转人工", invoice={"number": "25112000000087654321", "status": "failed"})

    assert found("授信额度") == [quota], "a word of a merchant message (trigram)"
    assert found("额度") == [quota], "two characters: the LIKE fallback"
    assert found("EMAIL") == [] and found("邮件") == [printer]
    assert found("好运商贸") == [quota], "the merchant's name"
    assert found(TAX_ID) == [quota] and found(TAX_ID.lower()) == [quota], "a full taxpayer id"
    assert found(OTHER_TAX_ID) == [], "another merchant's taxpayer id finds nothing of this one"
    assert found(NUMBER) == [printer], "an invoice number in a message"
    assert found("25112000000087654321") == [recorded], "an invoice number the bot recorded in the context"
    assert found("没有这句话") == []
    assert found('"额度') == [] and found("100%") == [], "quotes and wildcards are plain characters"


def test_the_message_index_follows_edits_and_deletes(sdb):
    ticket_id = open_ticket("s4", "转人工")
    with session_scope() as db_session:
        message_id = ticket_handoff.append_merchant_message(
            db_session=db_session, ticket_id=ticket_id, text="税控盘锁死了怎么解锁"
        ).id
    assert found("税控盘锁死") == [ticket_id]
    with session_scope() as db_session:
        db_session.get(TicketMessage, message_id).text = "电子税务局登录不上"
    assert found("税控盘锁死") == [] and found("登录不上") == [ticket_id]
    with session_scope() as db_session:
        db_session.query(TicketMessage).filter_by(ticket_id=ticket_id).delete()
    assert found("登录不上") == []


def test_the_migration_builds_the_index_of_each_database(sdb):
    engine = get_engine()
    open_ticket("s5", "开票软件打不开了")
    if engine.dialect.name == "sqlite":
        assert search.FTS in inspect(engine).get_table_names()
        with engine.connect() as connection:
            indexed = connection.execute(text(f"SELECT text FROM {search.FTS}")).scalars().all()
        assert indexed == ["开票软件打不开了"], "merchant messages only, written by the trigger"
    else:
        assert search.TRGM_INDEX in {i["name"] for i in inspect(engine).get_indexes("ticket_message")}
