"""The merchant web chat in a real browser (Playwright driving Debian's chromium) against a real uvicorn server: a
merchant asks a question and gets the answer, asks for a person, and the agent's reply (sent through the ticketing
services) and the rating question appear on the page without a reload, over server-sent events or, when those are
unavailable, by polling; and an integration's user in an iframe on another site."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from core.database import session_scope
from tests.conftest import make_integration
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


@contextmanager
def shop_site(html: str) -> Iterator[str]:
    """Another site's page (served on "localhost", a different site from the chat's 127.0.0.1): its URL."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


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


@SQLITE_ONLY
def test_an_integration_embeds_the_chat_for_its_signed_user_in_an_iframe(served, browser):  # noqa: F811
    shop = make_integration("shop")
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        signed = urlencode(shop.signed("alice"))
        host_page = f'<!doctype html><title>商城</title><iframe src="{served}/chat?{signed}" width="380" height="600">'
        with shop_site(host_page) as shop_url:  # another site (localhost, not 127.0.0.1) frames the chat
            page.goto(shop_url)
            chat = page.frame_locator("iframe")
            chat.get_by_label("输入消息").fill("转人工")
            chat.get_by_role("button", name="发送").click()
            expect(chat.locator(".msg.bot").last).to_contain_text("工单")
            with session_scope() as db_session:
                ticket = db_session.scalars(select(Ticket).where(Ticket.user_id == "shop:alice")).one()
                assert ticket.channel == "api", "the integration's user, as through its own widget"
            agent_replies(ticket.id, REPLY)
            expect(chat.locator(".msg.agent .bubble")).to_have_text(REPLY)
    finally:
        context.close()
