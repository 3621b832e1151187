"""The console in a real browser (Playwright driving Debian's chromium) against a real uvicorn server: an agent logs
in, takes a ticket, replies, and the fake Telegram Bot API receives the reply through serve's outbox worker."""

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from argon2 import PasswordHasher
from playwright.sync_api import expect, sync_playwright

from bot.bootstrap import prepare_database
from core.database import get_engine, session_scope
from knowledge import service as knowledge_service
from knowledge.live import get_live_knowledge
from tests.conftest import clear_process_caches, make_integration
from tests.console.test_console import console_app
from tests.fakes.telegram import TOKEN, FakeTelegram
from ticketing import handoff, staff

CHROMIUM = Path("/usr/bin/chromium")
# Live pages wait on a server, a worker and an event stream that share two busy cores with the whole suite in CI.
expect.set_options(timeout=15_000)
APT_TIMEOUT_SECONDS = 900
PASSWORD = "correct horse battery"
CHAT_ID = 4242
REPLY = "您好，我是客服小王，您的发票正在重新开具。"
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


# --- chromium ------------------------------------------------------------------------------------------------


def _apt(*args: str) -> subprocess.CompletedProcess:
    command = ["apt-get", *args]
    if os.geteuid() != 0 and shutil.which("sudo"):
        command = ["sudo", "-n", *command]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=APT_TIMEOUT_SECONDS, check=False)


def install_chromium() -> None:
    """apt-get install chromium (Debian 12), running apt-get update first when the package lists lack it."""
    if shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} is missing and there is no apt-get to install it: install Debian's chromium package")
    done = _apt("install", "-y", "--no-install-recommends", "chromium")
    if done.returncode != 0:
        updated = _apt("update")
        if updated.returncode != 0:
            pytest.fail(f"apt-get update failed while installing chromium (run as root?):\n{updated.stderr[-2000:]}")
        done = _apt("install", "-y", "--no-install-recommends", "chromium")
    if done.returncode != 0 or not CHROMIUM.exists():
        pytest.fail(
            f"could not install chromium with apt-get (exit {done.returncode}; run the tests as root or install the "
            f"`chromium` package):\n{done.stderr[-2000:]}"
        )


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's chromium, installed with apt-get when missing (the test fails, not skips, when it cannot be)."""
    if not CHROMIUM.exists():
        install_chromium()
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def browser(chromium_path) -> Iterator:
    """A headless chromium for this module only: Playwright's sync API keeps an event loop running while it is
    open, which would break later tests that call asyncio.run()."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield launched
        launched.close()


# --- the server ----------------------------------------------------------------------------------------------


class Server:
    """The console app served by uvicorn on a free 127.0.0.1 port, in a thread."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(console_app(), log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, name="console-uvicorn", daemon=True
        )

    def start(self) -> "Server":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.socket.close()


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegram]:
    fake = FakeTelegram().start()
    yield fake
    fake.stop()


@pytest.fixture
def served(app_env, fake_telegram, monkeypatch) -> Iterator[str]:
    """The whole app as `serve` runs it (outbox worker on, delivering to the fake Bot API), on SQLite."""
    monkeypatch.setattr(staff, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_BASE", fake_telegram.api_base)
    monkeypatch.setenv("RUN_WORKER_IN_SERVE", "true")
    monkeypatch.setenv("OUTBOX_POLL_SECONDS", "0.1")
    monkeypatch.setenv("UNANSWERED_CLARIFY_MINUTES", "0")  # a choice nobody took up is unanswered at once
    clear_process_caches()
    prepare_database()
    server = Server().start()
    yield server.url
    server.stop()
    get_engine().dispose()


def logged_in(browser, served: str, path: str, username: str, *, timeout_ms: int = 10_000):
    """A new browser context and a page that asked for `path`, logged in as `username` and landed there."""
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    page.goto(f"{served}{path}")
    expect(page).to_have_url(f"{served}/console/login?next={path}")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    expect(page).to_have_url(f"{served}{path}")
    return context, page


# --- the scenario --------------------------------------------------------------------------------------------


@SQLITE_ONLY
def test_agent_logs_in_takes_a_ticket_and_the_merchant_receives_the_reply(served, fake_telegram, browser):
    with session_scope() as db_session:
        staff.create(db_session=db_session, username="xiaowang", password=PASSWORD, display_name="小王")
        ticket_id = handoff.open_for_handoff(
            db_session=db_session, channel="telegram", user_id=str(CHAT_ID), text="人工客服，发票开具失败"
        ).ticket.id
    context, page = logged_in(browser, served, f"/console/tickets/{ticket_id}", "xiaowang")
    try:
        expect(page.locator(".transcript")).to_contain_text("人工客服，发票开具失败")

        page.get_by_role("button", name="接手此工单").click()
        expect(page.get_by_role("status")).to_contain_text("已接手此工单")
        page.locator("textarea[name=text]").first.fill(REPLY)
        page.get_by_role("button", name="发送回复").click()
        expect(page.get_by_role("status")).to_contain_text("回复已发送")
        expect(page.locator(".msg-agent")).to_contain_text(REPLY)

        (sent,) = fake_telegram.wait_for("sendMessage", timeout=15)
        assert sent.params["chat_id"] == CHAT_ID and sent.params["text"] == REPLY
        deadline = time.monotonic() + 10
        while "已送达" not in page.locator(".msg-agent").inner_text() and time.monotonic() < deadline:
            time.sleep(0.2)
            page.reload()
        expect(page.locator(".msg-agent .delivery")).to_have_text("已送达")
    finally:
        context.close()


@SQLITE_ONLY
def test_admin_edits_an_faq_answer_and_the_bot_answers_with_it(served, browser):
    import httpx

    with session_scope() as db_session:
        staff.create(db_session=db_session, username="admin", password=PASSWORD, role="admin")
        question = knowledge_service.get(db_session=db_session, faq_id="deduct_deadline").question
    chat = make_integration().headers
    before = httpx.post(f"{served}/api/chat", json={"user_id": "m-faq", "text": question}, headers=chat, timeout=10)
    before = before.json()
    assert before["topic"] == "deduct_deadline"
    marker = "（已按2026年最新口径更新）"
    context, page = logged_in(browser, served, "/console/admin/faq/deduct_deadline", "admin")
    try:
        answer = page.locator("textarea[name=answer]")
        answer.fill(answer.input_value() + marker)
        page.get_by_role("button", name="保存").click()
        expect(page.get_by_role("status")).to_be_visible()
    finally:
        context.close()
    after = httpx.post(f"{served}/api/chat", json={"user_id": "m-faq-2", "text": question}, headers=chat, timeout=10)
    after = after.json()
    assert after["topic"] == "deduct_deadline" and marker in after["text"]


# Questions the shipped FAQ does not answer (checked with `merchant-assist triage`): the customs ones are an outside
# subject (超出范围), the others get the fallback reply or a choice of topics nobody takes up. Twenty wordings.
CUSTOMS = [
    "海关进口增值税专用缴款书怎么抵扣",
    "海关缴款书能抵扣进项税吗",
    "进口货物交的海关增值税怎么抵扣",
    "海关专用缴款书在哪里勾选确认",
    "进口环节缴纳的增值税可以抵扣吗",
    "海关缴款书抵扣要注意什么",
    "海关缴款书上的税额能不能抵",
    "进口报关时海关代征的增值税怎么做进项抵扣",
    "海关进口增值税缴款书在哪里认证",
]
MERGE = [
    "两张发票能合并成一张吗",
    "客户要求把几张小票合成一张大票",
    "多张发票合并开具可以吗",
    "分开开的发票能不能合成一张",
]
OTHER_MISSES = [
    "手机扫发票二维码没反应",
    "发票二维码扫了显示无效",
    "开票员离职了怎么交接",
    "开票人可以写老板的名字吗",
    "机动车统一发票在哪里开",
    "深圳的区块链电子发票怎么申请开通",
    "商户怎么接入区块链发票",
]
MISSES = [*CUSTOMS, *MERGE, *OTHER_MISSES]
MERGE_PARAPHRASE = "两张发票合并成一张可以吗"  # not among the misses


@SQLITE_ONLY
def test_admin_adds_a_cluster_of_unanswered_questions_as_alternates_and_the_bot_answers_it(served, browser):
    import httpx

    with session_scope() as db_session:
        staff.create(db_session=db_session, username="admin", password=PASSWORD, role="admin")
    chat = make_integration().headers

    def ask(user_id: str, text: str) -> dict:
        reply = httpx.post(f"{served}/api/chat", json={"user_id": user_id, "text": text}, headers=chat, timeout=60)
        assert reply.status_code == 200, reply.text
        return reply.json()

    intents = [ask(f"m-miss-{n}", text)["intent"] for n, text in enumerate(MISSES)]
    assert len(MISSES) == 20 and set(intents) <= {"fallback", "out_of_scope", "clarify"}, intents
    with session_scope() as db_session:  # asked of the matcher, so that it is not recorded among the misses
        matcher = get_live_knowledge().current(db_session=db_session).matcher
    assert matcher.match(MERGE_PARAPHRASE).outcome != "answer"
    context, page = logged_in(browser, served, "/console/admin/unanswered", "admin", timeout_ms=30_000)
    try:
        clusters = page.locator(".un-cluster")
        expect(clusters.first).to_be_visible()
        assert clusters.count() < len(MISSES)
        customs = clusters.filter(has_text=CUSTOMS[0])
        expect(customs).to_have_count(1)
        expect(customs.locator(".un-count")).to_have_text(f"{len(CUSTOMS)} 次")  # all its wordings, one group
        expect(customs).to_contain_text("超出范围")
        merge = clusters.filter(has_text=MERGE[0])
        expect(merge).to_have_count(1)
        count = int(merge.locator(".un-count").inner_text().split()[0])
        assert count >= 2  # grouped by meaning: at least two of its four wordings
        expect(merge.locator(".un-near tr")).to_have_count(3)
        expect(merge.locator(".un-sim").first).to_contain_text("%")
        page.screenshot(path="/tmp/unans.png", full_page=True)
        nearest = merge.locator(".un-near tr").first
        topic = nearest.locator("input[name=topic]").get_attribute("value")
        nearest.get_by_role("button", name="全部加为相似问法").click()
        expect(page.get_by_role("status")).to_contain_text(f"「{topic}」")
        expect(page.locator(".un-cluster").filter(has_text=MERGE[0])).to_have_count(0)
    finally:
        context.close()
    with session_scope() as db_session:
        entry = knowledge_service.get(db_session=db_session, faq_id=topic)
    assert MERGE[0] in entry.alternates and entry.version == 2  # one new version with the cluster's wordings
    answered = ask("m-after", MERGE_PARAPHRASE)
    assert (answered["intent"], answered["topic"]) == ("answer", topic), answered
