"""Merchant-centred context in the console on each database: private data kept out of lists and transcripts, the
invoice and guide path carried into the ticket, the merchant page, and search."""

import re
from datetime import datetime

from sqlalchemy import select

from core.clock import BEIJING
from core.conversation import service as conversation_service
from core.database import session_scope
from core.messages import IncomingMessage, Reply
from core.store import MemoryStore
from handlers.router import make_router
from invoices import service as invoice_service
from invoices import watches
from invoices.backend import InvoiceRecord, InvoiceStatus
from merchants import service as merchant_service
from tests.console.test_console import console, csrf_of, handoff, logged_in, visible_text  # noqa: F401 (fixture)
from ticketing import service
from ticketing.models import Ticket

TAX_ID = "91110108MA01ABCD5T"
CODE = "12345678"


def said(user_id: str, text: str, intent: str, *, channel: str = "telegram", reply: str = "好的") -> None:
    """A recorded turn of the conversation: what the merchant said and how the bot took it."""
    with session_scope() as db_session:
        conversation_service.record_turn(
            db_session=db_session,
            message=IncomingMessage(channel=channel, user_id=user_id, text=text),
            reply=Reply(text=reply, intent=intent),
        )


def make_merchant(name: str = "北京好运商贸有限公司", tax_ids: tuple[str, ...] = (TAX_ID,)) -> int:
    with session_scope() as db_session:
        return merchant_service.create(db_session=db_session, name=name, tax_ids=list(tax_ids)).id


# --- privacy and noise ---------------------------------------------------------------------------------------


def test_the_subject_is_the_merchants_question_and_no_code_or_tax_id_reaches_the_queue(console):  # noqa: F811
    client, _ = logged_in(console, "alice")
    make_merchant()
    said("8001", "你好", "greeting")
    said("8001", f"绑定 {TAX_ID} {CODE}", "binding", reply="绑定成功！")
    said("8001", "开票时提示可用授信额度不足怎么办", "answer")
    ticket_id = handoff("8001", text="转人工")
    with session_scope() as db_session:
        assert db_session.get(Ticket, ticket_id).subject == "开票时提示可用授信额度不足怎么办"

    queue = client.get("/console/queue").text
    assert "开票时提示可用授信额度不足怎么办" in queue
    assert CODE not in queue and TAX_ID not in queue

    page = client.get(f"/console/tickets/{ticket_id}").text
    assert f"绑定 {TAX_ID} ******" in visible_text(page), "the code is masked in the transcript"
    assert CODE not in page


def test_a_handoff_message_with_a_problem_gives_the_subject_and_old_subjects_are_masked_in_the_queue(console):  # noqa: F811
    client, _ = logged_in(console, "alice")
    first = handoff("8002", text="转人工，发票开不出来")
    said("8003", f"绑定 {TAX_ID} {CODE}", "binding")
    leaked = handoff("8003", text="转人工")
    with session_scope() as db_session:
        assert db_session.get(Ticket, first).subject == "发票开不出来"
        assert db_session.get(Ticket, leaked).subject == "", "a binding command is never the subject"
        db_session.get(Ticket, leaked).subject = f"绑定 {TAX_ID} {CODE} 电话13812345678"  # stored before masking
    queue = client.get("/console/queue").text
    for secret in (TAX_ID, CODE, "13812345678"):
        assert secret not in queue
    assert "138****5678" in queue


# --- the invoice and the guide path travel into the ticket ---------------------------------------------------

NUMBER = "25112000000012345678"


def chat(router, text: str, user: str = "9001", channel: str = "telegram"):
    with session_scope() as db_session:
        return router.handle(IncomingMessage(channel=channel, user_id=user, text=text), db_session=db_session)


def bound_router(user: str = "9001"):
    """A router whose `user` is bound to the test merchant; the merchant's invoice is stored (issued 14:30 Beijing)."""
    make_merchant()
    with session_scope() as db_session:
        invoice_service.upsert_many(
            db_session=db_session,
            records=[
                InvoiceRecord(
                    number=NUMBER,
                    status=InvoiceStatus.FAILED,
                    seller_tax_id=TAX_ID,
                    total="113.00",
                    issued_at=datetime(2026, 12, 1, 14, 30, tzinfo=BEIJING),
                    failure_reason="可用授信额度不足",
                )
            ],
        )
        merchant = merchant_service.get_by_tax_id(db_session=db_session, tax_id=TAX_ID)
        code, _ = merchant_service.issue_code(db_session=db_session, merchant_id=merchant.id, ttl_seconds=600)
    router = make_router(store=MemoryStore())
    assert "绑定成功" in chat(router, f"绑定 {TAX_ID} {code}", user).text
    return router, code


def test_the_invoice_looked_up_and_the_guide_path_are_in_the_ticket(console):  # noqa: F811
    client, _ = logged_in(console, "alice")
    router, code = bound_router()
    assert "开具失败" in chat(router, f"帮我查下发票 {NUMBER}").text
    started = chat(router, "开票提示服务器繁忙，请稍后再试")
    assert started.intent == "guide", started.text
    chat(router, "1")
    handed = chat(router, "转人工")
    assert handed.intent == "handoff"

    with session_scope() as db_session:
        ticket = db_session.scalar(select(Ticket).where(Ticket.user_id == "9001"))
        context = ticket.context
    assert context["invoice"]["number"] == NUMBER and context["invoice"]["status"] == "failed"
    assert context["guide"]["guide"] == "busy_server" and context["guide"]["path"], "the guide steps walked"

    page = client.get(f"/console/tickets/{ticket.id}").text
    shown = visible_text(page)
    assert NUMBER in shown and "开具失败" in shown and "¥113.00" in shown
    assert "2026-12-01 14:30" in shown, "issued time in Beijing time"
    assert "可用授信额度不足" in shown and "已查到" in shown
    assert "排查指南进度" in shown and "服务器繁忙" in shown
    assert code not in page, "the binding code is masked in the transcript"


# --- the merchant page, binding codes and invoice lookup ------------------------------------------------------


def test_the_merchant_page_gathers_identities_tickets_invoices_and_watches(console):  # noqa: F811
    client, _ = logged_in(console, "alice")
    router, _ = bound_router("9101")
    chat(router, "开票失败了，一直提示额度不足", "9101")
    chat(router, "转人工", "9101")
    with session_scope() as db_session:
        watches.add(
            db_session=db_session,
            channel="telegram",
            user_id="9101",
            code=None,
            number=NUMBER,
            last_status="failed",
            first_check_seconds=60,
            max_hours=24,
        )
        ticket = db_session.scalar(select(Ticket).where(Ticket.user_id == "9101"))
        merchant_id = ticket.merchant_id
    assert merchant_id is not None

    ticket_page = client.get(f"/console/tickets/{ticket.id}").text
    assert f'href="/console/merchants/{merchant_id}"' in ticket_page, "the ticket links to its merchant"

    page = client.get(f"/console/merchants/{merchant_id}")
    assert page.status_code == 200
    shown = visible_text(page.text)
    assert "北京好运商贸有限公司" in shown and TAX_ID in shown, "agents see the full taxpayer id here"
    assert "9101" in shown and "Telegram" in shown, "the bound chat identity"
    assert f'href="/console/tickets/{ticket.id}"' in page.text and ticket.number in shown
    assert NUMBER in shown and "开具失败" in shown and "¥113.00" in shown and "2026-12-01 14:30" in shown
    assert "发票关注" in shown and "关注中" in shown

    listed = client.get("/console/merchants", params={"q": "好运"}).text
    assert f'href="/console/merchants/{merchant_id}"' in listed
    assert f'href="/console/merchants/{merchant_id}"' in client.get("/console/merchants", params={"q": TAX_ID}).text
    assert f'href="/console/merchants/{merchant_id}"' not in client.get("/console/merchants", params={"q": "坏运"}).text
    assert client.get("/console/merchants/999").status_code == 404


def test_an_agent_issues_a_binding_code_shown_once_that_binds(console):  # noqa: F811
    client, agent_id = logged_in(console, "alice")
    merchant_id = make_merchant()
    token = csrf_of(client)
    assert client.post(f"/console/merchants/{merchant_id}/code").status_code == 403, "CSRF protected"
    page = client.post(f"/console/merchants/{merchant_id}/code", data={"csrf_token": token})
    assert page.status_code == 200
    code = re.search(r'class="binding-code">(\d{8})<', page.text).group(1)
    assert "有效期至" in page.text and "只显示这一次" in page.text
    assert code not in client.get(f"/console/merchants/{merchant_id}").text, "shown once"
    with session_scope() as db_session:
        issued = [e for e in service.get_events(db_session=db_session, limit=50) if e.action == "binding_code_issued"]
        assert [e.actor_id for e in issued] == [agent_id] and code not in str(issued[0].after)
        result = merchant_service.bind(
            db_session=db_session, store=MemoryStore(), channel="telegram", user_id="9201", tax_id=TAX_ID, code=code
        )
    assert result.outcome == "bound"


def test_an_agent_looks_an_invoice_up_by_number(console):  # noqa: F811
    client, _ = logged_in(console, "alice")
    bound_router("9301")
    token = csrf_of(client)
    assert client.post("/console/invoices/lookup", data={"number": NUMBER}).status_code == 403, "CSRF protected"
    page = client.post("/console/invoices/lookup", data={"number": NUMBER, "csrf_token": token})
    assert page.status_code == 200
    shown = visible_text(page.text)
    assert "开具失败" in shown and "¥113.00" in shown and "2026-12-01 14:30" in shown and "可用授信额度不足" in shown
    assert "北京好运商贸有限公司" in shown, "whose invoice it is"
    missing = client.post("/console/invoices/lookup", data={"number": "25112000000099999999", "csrf_token": token})
    assert missing.status_code == 404 and "没有查到" in missing.text
    wrong = client.post("/console/invoices/lookup", data={"number": "你好", "csrf_token": token})
    assert wrong.status_code == 400


def test_the_queue_search_box_finds_a_ticket_by_merchant_tax_id_invoice_number_and_message(console):  # noqa: F811
    client, _ = logged_in(console, "alice")
    router, _ = bound_router("9401")
    chat(router, f"发票 {NUMBER} 开不出来，税控盘一直报错", "9401")
    chat(router, "转人工", "9401")
    other = handoff("9402", text="转人工，电子税务局登录不上")
    with session_scope() as db_session:
        ticket = db_session.scalar(select(Ticket).where(Ticket.user_id == "9401"))

    def finds(needle: str) -> bool:
        page = client.get("/console/queue", params={"q": needle, "state": "all"}).text
        assert f'href="/console/tickets/{other}"' not in page or needle == "登录不上"
        return f'href="/console/tickets/{ticket.id}"' in page

    assert finds("好运商贸") and finds(TAX_ID) and finds(NUMBER) and finds("税控盘一直报错")
    assert not finds("登录不上")
