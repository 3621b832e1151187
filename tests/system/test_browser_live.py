"""The live console in a real browser (Playwright driving Debian's chromium) against the real app on uvicorn: a
merchant's new ticket and replies appear without reload, the draft survives, a colleague sees who is viewing and
typing, "/" inserts a quick reply in place, Ctrl+Enter sends, and a merchant reply on my ticket notifies me."""

from pathlib import Path

import httpx
from playwright.sync_api import expect

from core.database import session_scope
from tests.conftest import make_integration
from tests.system.test_browser import SQLITE_ONLY, browser, chromium_path, fake_telegram, logged_in, served  # noqa: F401
from ticketing import flows, replies, service, staff
from ticketing import handoff as ticket_handoff

SHOTS = Path("/tmp/shots-live")
DRAFT = "您好，我先帮您查一下开票记录，"
# Desktop notifications recorded instead of shown (the permission counts as granted).
NOTIFICATIONS = """
window.__notes = [];
window.Notification = function (title, options) { window.__notes.push(title); this.close = function () {}; };
window.Notification.permission = "granted";
window.Notification.requestPermission = function (done) {
  if (done) done("granted");
  return Promise.resolve("granted");
};
"""


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@SQLITE_ONLY
def test_two_agents_work_a_ticket_live(served, browser):  # noqa: F811
    with session_scope() as db_session:
        agent_a = staff.create(
            db_session=db_session, username="wangfang", password="correct horse battery", display_name="王芳"
        ).id
        staff.create(db_session=db_session, username="lisi", password="correct horse battery", display_name="李四")
        replies.create_canned(db_session=db_session, title="问候", body="{merchant_name}您好，我是{agent_name}，")
    chat = make_integration()

    def merchant_says(text: str, user_id: str = "m-live") -> None:
        body = {"user_id": user_id, "text": text}
        sent = httpx.post(f"{served}/api/chat", json=body, headers=chat.headers, timeout=30)
        assert sent.status_code == 200, sent.text

    context_a, page_a = logged_in(browser, served, "/console/queue", "wangfang")
    context_a.add_init_script(NOTIFICATIONS)
    page_a.reload()
    context_b = None
    try:
        expect(page_a.locator(".live-status")).to_have_text("实时")
        page_a.evaluate("window.__stayed = true")
        merchant_says("人工客服，发票开具失败")
        with session_scope() as db_session:
            (ticket,) = service.get_for_identity(db_session=db_session, channel="api", user_id=chat.identity("m-live"))
            number, ticket_id = ticket.number, ticket.id
        expect(page_a.locator("table.queue")).to_contain_text(number)
        assert page_a.evaluate("window.__stayed === true"), "the queue updated without a reload"
        shot(page_a, "1-queue-new-ticket")

        page_a.get_by_role("link", name=number).click()
        expect(page_a).to_have_url(f"{served}/console/tickets/{ticket_id}")
        expect(page_a.locator(".live-status")).to_have_text("实时")
        reply_box = page_a.locator("#reply-text")
        reply_box.click()
        reply_box.type(DRAFT)
        page_a.evaluate("window.__stayed = true")
        merchant_says("开票时提示税号不正确")
        expect(page_a.locator("#transcript .transcript").last).to_contain_text("开票时提示税号不正确")
        expect(reply_box).to_have_value(DRAFT)
        assert page_a.evaluate("window.__stayed === true && document.activeElement.id === 'reply-text'")
        shot(page_a, "2-ticket-merchant-reply-draft-kept")

        context_b, page_b = logged_in(browser, served, f"/console/tickets/{ticket_id}", "lisi")
        expect(page_b.locator(".presence")).to_contain_text("王芳 正在查看")
        expect(page_b.locator(".live-status")).to_have_text("实时")
        expect(page_a.locator(".presence")).not_to_contain_text("王芳")
        reply_box.type("请稍等")
        expect(page_b.locator(".presence")).to_contain_text("王芳 正在输入…")
        shot(page_b, "3-colleague-sees-typing")

        reply_box.fill("")
        reply_box.type("/问")
        menu = page_a.locator(".canned-menu")
        expect(menu).to_be_visible()
        expect(menu.locator("li").first).to_contain_text("问候")
        shot(page_a, "4-quick-reply-menu")
        reply_box.press("Enter")
        expect(menu).to_be_hidden()
        expect(reply_box).to_have_value("您好，我是王芳，")
        assert page_a.evaluate("window.__stayed === true"), "the quick reply went in without a reload"
        reply_box.type("税号请按营业执照填写。")

        reply_box.press("Control+Enter")
        expect(page_a.get_by_role("status")).to_contain_text("回复已发送")
        expect(page_a.locator(".msg-agent").last).to_contain_text("您好，我是王芳，税号请按营业执照填写。")
        expect(page_b.locator("#transcript")).to_contain_text("税号请按营业执照填写。")  # the colleague's view too
        shot(page_b, "5-colleague-sees-reply")

        page_a.goto(f"{served}/console/queue")
        expect(page_a.locator(".live-status")).to_have_text("实时")
        merchant_says("好的，我再试一下")
        page_a.wait_for_function("window.__notes.length > 0", timeout=10_000)
        assert page_a.evaluate("window.__notes") == ["商户发来新消息"]
        shot(page_a, "6-queue-after-notification")

        with session_scope() as db_session:
            staff.set_online(db_session=db_session, staff_id=agent_a, online=True)
        merchant_says("转人工，发票作废不了", user_id="m-live-2")
        flows.housekeeping()  # the ticketing worker's round: auto-assignment gives the new ticket to 王芳
        page_a.wait_for_function("window.__notes.length > 1", timeout=10_000)
        assert page_a.evaluate("window.__notes") == ["商户发来新消息", "新工单已分配给您"]
    finally:
        context_a.close()
        if context_b is not None:
            context_b.close()


@SQLITE_ONLY
def test_without_the_event_stream_the_queue_says_so_and_refreshes_itself(served, browser):  # noqa: F811
    with session_scope() as db_session:
        staff.create(db_session=db_session, username="wangfang", password="correct horse battery", display_name="王芳")
    context, page = logged_in(browser, served, "/console/queue", "wangfang")
    try:
        context.route("**/console/events*", lambda route: route.abort())
        page.reload()
        expect(page.locator(".live-status")).to_have_text("已断开，每 15 秒刷新", timeout=10_000)
        page.evaluate("window.__stayed = true")
        with session_scope() as db_session:
            number = ticket_handoff.open_for_handoff(
                db_session=db_session, channel="telegram", user_id="4242", text="人工客服"
            ).ticket.number
        expect(page.locator("table.queue")).to_contain_text(number, timeout=20_000)
        assert page.evaluate("window.__stayed === true"), "polled in place, not reloaded"
        shot(page, "7-queue-polling-when-disconnected")
    finally:
        context.close()


@SQLITE_ONLY
def test_a_sent_reply_shows_as_delivered_without_a_reload(served, fake_telegram, browser):  # noqa: F811
    with session_scope() as db_session:
        staff.create(db_session=db_session, username="wangfang", password="correct horse battery", display_name="王芳")
        ticket_id = ticket_handoff.open_for_handoff(
            db_session=db_session, channel="telegram", user_id="4242", text="人工客服，发票开具失败"
        ).ticket.id
    context, page = logged_in(browser, served, f"/console/tickets/{ticket_id}", "wangfang")
    try:
        fake_telegram.flood(retry_after=3)  # the first attempt is refused: the reply waits a few seconds
        page.locator("#reply-text").fill("您好，马上为您处理。")
        page.locator("#reply-text").press("Control+Enter")
        expect(page.get_by_role("status")).to_contain_text("回复已发送")
        page.evaluate("window.__stayed = true")
        expect(page.locator(".msg-agent .delivery")).not_to_have_text("已送达")
        fake_telegram.wait_for("sendMessage", count=2, timeout=15)
        expect(page.locator(".msg-agent .delivery")).to_have_text("已送达", timeout=15_000)
        assert page.evaluate("window.__stayed === true")
    finally:
        context.close()
