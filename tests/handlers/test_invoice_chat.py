"""Invoice status, binding and watches as a merchant meets them in chat, through the router, on each database."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.bootstrap import prepare_database
from core.database import session_scope
from core.messages import IncomingMessage
from core.outbox.models import OutboxMessage
from core.store import MemoryStore
from handlers.router import make_router
from invoices import flows, service
from invoices.backend import InvoiceRecord, InvoiceStatus
from invoices.sql_backend import SqlInvoiceBackend
from merchants import service as merchants

SELLER = "91110108MA01ABCD5T"
OTHER = "91110000600037341L"
NUMBER = "25112000000012345678"
FOREIGN = "25112000000087654321"


@pytest.fixture
def router(app_env):
    prepare_database()
    return make_router(store=MemoryStore())


def say(router, text: str, user: str = "alice", channel: str = "wechat"):
    with session_scope() as db_session:
        return router.handle(IncomingMessage(channel=channel, user_id=user, text=text), db_session=db_session)


def store_invoices(*records: InvoiceRecord) -> None:
    with session_scope() as db_session:
        service.upsert_many(db_session=db_session, records=records)


def new_code(tax_id: str = SELLER, name: str = "甲公司") -> str:
    with session_scope() as db_session:
        merchant = merchants.get_by_tax_id(db_session=db_session, tax_id=tax_id) or merchants.create(
            db_session=db_session, name=name, tax_ids=[tax_id]
        )
        code, _ = merchants.issue_code(db_session=db_session, merchant_id=merchant.id, ttl_seconds=600)
        return code


def payloads(reply) -> list[str]:
    return [option.payload for option in reply.options]


def test_unbound_merchant_is_asked_to_bind_and_then_gets_the_status(router):
    store_invoices(
        InvoiceRecord(
            number=NUMBER, status=InvoiceStatus.FAILED, seller_tax_id=SELLER, failure_reason="可用授信额度不足"
        )
    )
    first = say(router, f"帮我查下发票 {NUMBER}")
    assert first.intent == "invoice_lookup" and "先绑定企业" in first.text
    assert "开具失败" not in first.text, "nothing about the invoice before binding"
    assert "intent:bind" in payloads(first)

    asked = say(router, "1")
    assert asked.intent == "binding" and "绑定码" in asked.text
    done = say(router, f"{SELLER} {new_code()}")
    assert "绑定成功" in done.text and "甲公司" in done.text
    assert "开具失败" in done.text and "可用授信额度不足" in done.text, "the pending invoice is looked up"
    assert done.topic == "quota_insufficient"
    assert "faq:quota_insufficient" in payloads(done)


def test_bound_merchant_sees_status_meaning_next_step_and_freshness(router):
    say(router, f"绑定 {SELLER} {new_code()}")
    store_invoices(InvoiceRecord(number=NUMBER, status=InvoiceStatus.SIGN_FAILED, seller_tax_id=SELLER, total="113.00"))
    reply = say(router, f"发票号码{NUMBER}")
    assert reply.intent == "invoice_lookup" and reply.invoice == {"number": NUMBER}
    assert "签章失败" in reply.text and "不要重新开票" in reply.text and "113.00" in reply.text
    assert "刚刚查询" in reply.text
    assert "数电票（2025年，北京）" in reply.text


def test_another_merchants_invoice_looks_exactly_like_a_missing_one(router):
    say(router, f"绑定 {SELLER} {new_code()}")
    store_invoices(
        InvoiceRecord(number=FOREIGN, status=InvoiceStatus.ISSUED, seller_tax_id=OTHER, buyer_name="机密客户")
    )
    foreign = say(router, f"查发票 {FOREIGN}")
    missing = say(router, "查发票 25112000000011111111")
    assert foreign.text.replace(FOREIGN, "X") == missing.text.replace("25112000000011111111", "X")
    assert "机密客户" not in foreign.text and "不要重新开具" in foreign.text


def test_not_found_offers_a_watch_that_reports_the_invoice_later(router):
    say(router, f"绑定 {SELLER} {new_code()}")
    missing = say(router, f"{NUMBER} 刚开的发票查不到")
    assert "暂时没有查到" in missing.text
    watch_payload = f"watch:add::{NUMBER}"
    assert watch_payload in payloads(missing)
    watching = say(router, str(payloads(missing).index(watch_payload) + 1))
    assert watching.intent == "invoice_watch" and "通知您" in watching.text

    listed = say(router, "我的关注")
    assert NUMBER in listed.text and "watch:cancel:all" in payloads(listed)

    store_invoices(InvoiceRecord(number=NUMBER, status=InvoiceStatus.ISSUED, seller_tax_id=SELLER))
    later = datetime.now(UTC) + timedelta(hours=1)
    assert flows.check_due_watches(backend=SqlInvoiceBackend(), now=later) == 1
    with session_scope() as db_session:
        sent = list(db_session.scalars(select(OutboxMessage)))
    assert [(m.channel, m.recipient) for m in sent] == [("wechat", "alice")]
    assert NUMBER in sent[0].payload["text"] and "已开具" in sent[0].payload["text"]


def test_watches_can_be_cancelled_in_chat(router):
    say(router, f"绑定 {SELLER} {new_code()}")
    say(router, f"查发票 {NUMBER}")
    say(router, "帮我盯着这张发票")
    listed = say(router, "关注列表")
    cancelled = say(router, str(payloads(listed).index("watch:cancel:all") + 1))
    assert "已取消 1 个" in cancelled.text
    assert "没有正在关注" in say(router, "我的关注").text


def test_wrong_code_is_refused_and_repeated_guessing_is_stopped(router):
    new_code()
    first = say(router, f"绑定 {SELLER} 00000000")
    assert "不正确" in first.text
    for guess in range(1, 5):
        say(router, f"{SELLER} {guess:08d}")
    locked = say(router, f"{SELLER} {new_code()}")
    assert "尝试次数过多" in locked.text
    assert "先绑定企业" in say(router, f"查发票 {NUMBER}").text


def test_invalid_taxpayer_id_is_explained(router):
    reply = say(router, "绑定 91110108MA01ABCDOT 12345678")
    assert reply.intent == "binding"
    assert "O" in reply.text and ("不正确" in reply.text or "有误" in reply.text or "字母" in reply.text)


def test_binding_status_and_unbinding(router):
    say(router, f"绑定 {SELLER} {new_code()}")
    shown = say(router, "我的绑定")
    assert "甲公司" in shown.text and SELLER not in shown.text, "the taxpayer id is shown masked"
    confirm = say(router, "解绑")
    assert "binding:unbind:yes" in payloads(confirm)
    done = say(router, str(payloads(confirm).index("binding:unbind:yes") + 1))
    assert "已解除绑定" in done.text
    assert "先绑定企业" in say(router, f"查发票 {NUMBER}").text


def test_bindings_are_per_channel(router):
    say(router, f"绑定 {SELLER} {new_code()}", channel="telegram", user="42")
    store_invoices(InvoiceRecord(number=NUMBER, status=InvoiceStatus.ISSUED, seller_tax_id=SELLER))
    assert "已开具" in say(router, f"查发票 {NUMBER}", channel="telegram", user="42").text
    assert "先绑定企业" in say(router, f"查发票 {NUMBER}", channel="wechat", user="42").text


class DownBackend:
    name = "down"

    def lookup(self, *, code, number):
        from invoices.backend import BackendUnavailable

        raise BackendUnavailable("circuit open")


def test_backend_outage_gets_a_clear_answer_and_a_watch_offer(app_env):
    prepare_database()
    router = make_router(store=MemoryStore())
    router.invoices = DownBackend()
    say(router, f"绑定 {SELLER} {new_code()}")
    reply = say(router, f"查发票 {NUMBER}")
    assert "暂时无法查询" in reply.text and f"watch:add::{NUMBER}" in payloads(reply)
