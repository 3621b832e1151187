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
from tests.conftest import clear_process_caches, make_integration
from tests.console.test_console import console_app
from tests.fakes.telegram import TOKEN, FakeTelegram
from ticketing import handoff, staff

CHROMIUM = Path("/usr/bin/chromium")
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
    clear_process_caches()
    prepare_database()
    server = Server().start()
    yield server.url
    server.stop()
    get_engine().dispose()


# --- the scenario --------------------------------------------------------------------------------------------


@SQLITE_ONLY
def test_agent_logs_in_takes_a_ticket_and_the_merchant_receives_the_reply(served, fake_telegram, browser):
    with session_scope() as db_session:
        staff.create(db_session=db_session, username="xiaowang", password=PASSWORD, display_name="小王")
        ticket_id = handoff.open_for_handoff(
            db_session=db_session, channel="telegram", user_id=str(CHAT_ID), text="人工客服，发票开具失败"
        ).ticket.id
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(f"{served}/console/tickets/{ticket_id}")
        expect(page).to_have_url(f"{served}/console/login?next=/console/tickets/{ticket_id}")
        page.get_by_label("用户名").fill("xiaowang")
        page.get_by_label("密码").fill(PASSWORD)
        page.get_by_role("button", name="登录").click()
        expect(page).to_have_url(f"{served}/console/tickets/{ticket_id}")
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

    from knowledge import service as knowledge_service

    with session_scope() as db_session:
        staff.create(db_session=db_session, username="admin", password=PASSWORD, role="admin")
        question = knowledge_service.get(db_session=db_session, faq_id="deduct_deadline").question
    chat = make_integration().headers
    before = httpx.post(f"{served}/api/chat", json={"user_id": "m-faq", "text": question}, headers=chat, timeout=10)
    before = before.json()
    assert before["topic"] == "deduct_deadline"
    marker = "（已按2026年最新口径更新）"
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(f"{served}/console/admin/faq/deduct_deadline")
        page.get_by_label("用户名").fill("admin")
        page.get_by_label("密码").fill(PASSWORD)
        page.get_by_role("button", name="登录").click()
        expect(page).to_have_url(f"{served}/console/admin/faq/deduct_deadline")
        answer = page.locator("textarea[name=answer]")
        answer.fill(answer.input_value() + marker)
        page.get_by_role("button", name="保存").click()
        expect(page.get_by_role("status")).to_be_visible()
    finally:
        context.close()
    after = httpx.post(f"{served}/api/chat", json={"user_id": "m-faq-2", "text": question}, headers=chat, timeout=10)
    after = after.json()
    assert after["topic"] == "deduct_deadline" and marker in after["text"]
