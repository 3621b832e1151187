"""The whole human loop in real browsers against the real app on uvicorn: a merchant on the web chat asks for a
person; the ticket appears in an agent's live queue and notifies her; her reply (Ctrl+Enter) appears on the
merchant's page; she resolves, the merchant rates on the page, and a colleague who opened the ticket sees that it is
being handled and then the rating, all without a reload on any of the three pages."""

from pathlib import Path

from playwright.sync_api import expect
from sqlalchemy import select

from core.database import session_scope
from tests.system.test_browser import SQLITE_ONLY, browser, chromium_path, fake_telegram, logged_in, served  # noqa: F401
from tests.system.test_browser_live import NOTIFICATIONS
from tests.system.test_browser_web_chat import open_chat, send
from ticketing import flows, replies, staff
from ticketing.models import Ticket

SHOTS = Path("/tmp/shots-journey")
PASSWORD = "correct horse battery"
REPLY = "您好，我是王芳。服务器繁忙时请先退出重新登录，仍不行我帮您提交工单。"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def stayed(*pages) -> bool:
    return all(page.evaluate("window.__stayed === true") for page in pages)


@SQLITE_ONLY
def test_web_chat_to_agent_and_back_with_the_rating_live_on_every_page(served, browser):  # noqa: F811
    with session_scope() as db_session:
        wangfang = staff.create(db_session=db_session, username="wangfang", password=PASSWORD, display_name="王芳")
        staff.create(db_session=db_session, username="lisi", password=PASSWORD, display_name="李四")
        staff.set_online(db_session=db_session, staff_id=wangfang.id, online=True)

    agent, queue = logged_in(browser, served, "/console/queue", "wangfang", timeout_ms=20_000)
    agent.add_init_script(NOTIFICATIONS)
    queue.reload()
    merchant, chat = open_chat(browser, served)
    colleague = None
    try:
        expect(queue.locator(".live-status")).to_have_text("实时")
        queue.evaluate("window.__stayed = true")
        chat.evaluate("window.__stayed = true")

        send(chat, "开票一直提示服务器繁忙，试了好几次都不行")
        expect(chat.locator(".msg.bot").last).not_to_have_text("")
        send(chat, "转人工")
        expect(chat.locator(".msg.bot").last).to_contain_text("工单")
        with session_scope() as db_session:
            ticket = db_session.scalars(select(Ticket).where(Ticket.channel == "web")).one()
            number, ticket_id = ticket.number, ticket.id
        row = queue.locator("table.queue tr", has_text=number)
        expect(row).to_contain_text("服务器繁忙")  # the subject is the question, not "转人工"
        flows.housekeeping()  # the ticketing worker's round: auto-assignment gives it to 王芳, who is online
        queue.wait_for_function("window.__notes.includes('新工单已分配给您')", timeout=10_000)
        expect(row).to_contain_text("王芳")
        assert stayed(queue), "the queue updated without a reload"
        shot(queue, "1-queue-new-ticket-assigned")

        row.get_by_role("link", name=number).click()
        page = queue
        expect(page).to_have_url(f"{served}/console/tickets/{ticket_id}")
        expect(page.locator(".live-status")).to_have_text("实时")  # live.js runs: Ctrl+Enter is bound
        page.evaluate("window.__stayed = true")

        colleague, other = logged_in(browser, served, f"/console/tickets/{ticket_id}", "lisi", timeout_ms=20_000)
        expect(other.locator(".handled-by")).to_contain_text("王芳 正在处理此工单")
        expect(other.locator(".presence")).to_contain_text("王芳 正在查看")
        expect(other.locator("#reply-text")).to_be_disabled()
        other.evaluate("window.__stayed = true")
        shot(other, "2-colleague-sees-being-handled")

        box = page.locator("#reply-text")
        box.fill(REPLY)
        expect(box).to_have_value(REPLY)
        box.press("Control+Enter")
        expect(page.get_by_role("status")).to_contain_text("回复已发送")
        expect(chat.locator(".msg.agent .bubble").last).to_have_text(REPLY)
        shot(chat, "3-merchant-gets-reply")

        page.get_by_role("button", name="标记已解决").click()
        expect(chat.locator(".msg.agent").last).to_contain_text("请为本次服务打分")
        send(chat, "5")
        expect(chat.locator(".msg.bot").last).to_contain_text(replies.CSAT_THANKS)
        expect(other.locator("[data-live-part=info]")).to_contain_text("5 / 5")
        shot(chat, "4-merchant-rated")
        shot(other, "5-colleague-sees-rating")
        assert stayed(chat, other), "the merchant's and the colleague's pages never reloaded"
        with session_scope() as db_session:
            assert db_session.get(Ticket, ticket_id).csat_score == 5
    finally:
        merchant.close()
        agent.close()
        if colleague is not None:
            colleague.close()
