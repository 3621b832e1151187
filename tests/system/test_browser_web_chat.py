"""The merchant web chat in a real browser (Playwright driving Debian's chromium) against a real uvicorn server: a
merchant asks a question and gets the answer, asks for a person, and the agent's reply (sent through the ticketing
services) and the rating question appear on the page without a reload, over server-sent events or, when those are
unavailable, by polling."""

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from core.database import session_scope
from tests.system.test_browser import SQLITE_ONLY, browser, chromium_path, fake_telegram, served  # noqa: F401
from ticketing import lifecycle, replies, staff
from ticketing.models import Ticket

REPLY = "您好，我是客服小王，您的发票正在重新开具。"


def web_ticket() -> int:
    with session_scope() as db_session:
        return db_session.scalars(select(Ticket.id).where(Ticket.channel == "web")).one()


def agent_replies(ticket_id: int, text: str) -> int:
    with session_scope() as db_session:
        agent = staff.get_by_username(db_session=db_session, username="xiaowang")
        if agent is None:
            agent = staff.create(db_session=db_session, username="xiaowang", password="correct horse battery")
        replies.send(db_session=db_session, ticket_id=ticket_id, agent_id=agent.id, text=text)
        return agent.id


def open_chat(browser, served: str, *, without_event_source: bool = False):  # noqa: F811
    context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    if without_event_source:
        page.add_init_script("delete window.EventSource;")
    page.goto(f"{served}/chat")
    page.evaluate("window.__notReloaded = true")
    return context, page


def send(page, text: str) -> None:
    page.get_by_label("输入消息").fill(text)
    page.get_by_role("button", name="发送").click()


@SQLITE_ONLY
@pytest.mark.parametrize("live", ["events", "polling"])
def test_merchant_asks_hands_over_and_sees_the_agents_reply_and_the_rating_question_live(served, browser, live):  # noqa: F811
    context, page = open_chat(browser, served, without_event_source=live == "polling")
    try:
        send(page, "开票提示服务器繁忙怎么办")
        expect(page.locator(".msg.me")).to_have_text("开票提示服务器繁忙怎么办")
        expect(page.locator(".msg.bot").nth(1)).to_be_visible()
        assert page.locator(".msg.bot .bubble").nth(1).inner_text().strip(), "the bot answered"

        send(page, "转人工")
        expect(page.locator(".msg.bot").last).to_contain_text("工单")
        ticket_id = web_ticket()

        if live == "events":
            expect(page.get_by_role("status")).to_have_text("在线")
        agent_id = agent_replies(ticket_id, REPLY)
        expect(page.locator(".msg.agent .bubble")).to_have_text(REPLY)
        with session_scope() as db_session:
            lifecycle.resolve(db_session=db_session, ticket_id=ticket_id, actor_id=agent_id)
        expect(page.locator(".msg.agent").last).to_contain_text("请为本次服务打分")

        send(page, "5")
        expect(page.locator(".msg.bot").last).to_contain_text(replies.CSAT_THANKS)
        assert page.evaluate("window.__notReloaded") is True, "everything arrived without a reload"
        with session_scope() as db_session:
            assert db_session.get(Ticket, ticket_id).csat_score == 5
            delivered = replies.deliveries(db_session=db_session, ticket_id=ticket_id)
        assert {d.status for d in delivered.values()} == {"sent"}, "the console shows the reply delivered"
    finally:
        context.close()
