"""Telegram channel, real python-telegram-bot client against a fake Bot API: webhook, outbox, sender, polling."""

import asyncio
import copy
import json
import logging
import re
import threading
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from bot.app import create_app
from bot.bootstrap import prepare_database
from bot.channels.telegram import inbound as telegram_bot
from bot.channels.telegram import views
from bot.channels.telegram.render import MAX_CALLBACK_BYTES, option_number, render, split_text, utf16_len
from bot.channels.telegram.sender import TelegramSender
from core.conversation.models import ConversationTurn
from core.database import get_sessionmaker, session_scope
from core.messages import IncomingMessage
from core.outbox.models import SENT, OutboxMessage
from core.outbox.senders import RetryLater, Undeliverable
from core.store import MemoryStore
from handlers.router import make_router
from tests.conftest import SHARED, clear_process_caches
from tests.fakes.telegram import TOKEN, FakeTelegram

FIXTURES = SHARED / "fixtures" / "telegram"
SECRET = "test-secret_Token-1"
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
MEDIA_TEXT = telegram_bot.MEDIA_REPLY.text
# For checks that reject a request before the database is touched, one database is enough.
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


# --- fixtures and helpers ---------------------------------------------------------------------------------------


@pytest.fixture
def fake():
    server = FakeTelegram().start()
    yield server
    server.stop()


@pytest.fixture
def telegram_env(app_env, fake, monkeypatch):
    """A fresh database and store, and settings pointing at the fake Bot API."""
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_SECRET_TOKEN", SECRET)
    monkeypatch.setenv("TELEGRAM_API_BASE", fake.api_base)
    monkeypatch.setenv("RUN_WORKER_IN_SERVE", "false")
    clear_process_caches()
    prepare_database()
    return fake


def make_app() -> FastAPI:
    """The real application (its outbox worker off: tests deliver explicitly)."""
    return create_app()


@pytest.fixture
def client(telegram_env):
    with TestClient(make_app()) as test_client:
        yield test_client


@pytest.fixture
def sender(fake):
    with TelegramSender(token=TOKEN, api_base=fake.api_base, store=MemoryStore(), per_chat_interval=0) as s:
        yield s


def fixture(name: str) -> dict:
    """A shared Telegram update sample; skip when ../shared is not there."""
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"shared fixture {name} not present")
    return json.loads(path.read_text(encoding="utf-8"))


def text_update(update_id: int, text: str, chat_id: int = 777001) -> dict:
    """A private-chat text message update."""
    user = {"id": chat_id, "is_bot": False, "first_name": "李", "language_code": "zh-hans"}
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id % 100000,
            "from": user,
            "chat": {"id": chat_id, "first_name": "李", "type": "private"},
            "date": 1700000000,
            "text": text,
        },
    }


def button_update(update_id: int, data: str, chat_id: int = 777001) -> dict:
    """A callback_query update from a button under a bot message in a private chat."""
    user = {"id": chat_id, "is_bot": False, "first_name": "李"}
    return {
        "update_id": update_id,
        "callback_query": {
            "id": f"cbq-{update_id}",
            "from": user,
            "message": {
                "message_id": 55,
                "from": {"id": 123456, "is_bot": True, "first_name": "发票助手"},
                "chat": {"id": chat_id, "first_name": "李", "type": "private"},
                "date": 1700000000,
                "text": "菜单",
            },
            "chat_instance": "42",
            "data": data,
        },
    }


def post(client: TestClient, update: dict | bytes, headers: dict | None = None):
    body = update if isinstance(update, bytes) else json.dumps(update, ensure_ascii=False).encode()
    return client.post("/telegram", content=body, headers=HEADERS if headers is None else headers)


def rows() -> list[OutboxMessage]:
    with session_scope() as db_session:
        return list(db_session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def expected_reply(*texts: str):
    """What the router answers a fresh merchant who types these messages (the last reply)."""
    router = make_router(store=MemoryStore(), record=False)
    with get_sessionmaker()() as db_session:  # rolled back: the reference run opens no ticket
        for text in texts:
            reply = router.handle(IncomingMessage("telegram", "reference-user", text), db_session=db_session)
        db_session.rollback()
    return reply


def without_ticket_number(text: str) -> str:
    """A handoff reply with its ticket number blanked (each run opens its own ticket)."""
    return re.sub(r"T\d{6}", "T??????", text)


def deliver(sender: TelegramSender) -> int:
    from core.outbox.worker import deliver_due

    return deliver_due(senders={"telegram": sender})


# --- webhook: the shared samples --------------------------------------------------------------------------------


def test_chinese_text_enqueues_the_bots_answer(client):
    update = fixture("09_message_text_zh_synthetic.json")
    assert post(client, update).status_code == 200
    [row] = rows()
    assert (row.channel, row.recipient, row.dedupe_key) == ("telegram", "535558561", "telegram:233970561")
    expected = expected_reply(update["message"]["text"])
    assert row.payload["text"] == expected.text
    assert [o["payload"] for o in row.payload["options"]] == [o.payload for o in expected.options]


@pytest.mark.parametrize("name", ["02_command_start.json", "01_message_text_official.json"])
def test_start_enqueues_the_menu_and_is_delivered_with_a_keyboard(client, sender, fake, name):
    update = fixture(name)
    assert post(client, update).status_code == 200
    [row] = rows()
    menu = expected_reply("菜单")
    assert row.recipient == str(update["message"]["chat"]["id"])
    assert row.payload["text"] == menu.text and len(row.payload["options"]) == len(menu.options) == 3
    assert deliver(sender) == 1
    [call] = fake.calls_to("sendMessage")
    assert call.params["chat_id"] == update["message"]["chat"]["id"]
    keyboard = call.params["reply_markup"]["inline_keyboard"]
    assert [row[0]["callback_data"] for row in keyboard] == ["opt:1", "opt:2", "opt:3"]
    assert keyboard[1][0]["text"].startswith("2. ")
    assert rows()[0].status == SENT


def test_button_press_is_answered_and_acts_like_typing_the_number(client, fake):
    start = fixture("02_command_start.json")
    chat_id = start["message"]["chat"]["id"]
    assert post(client, start).status_code == 200
    press = fixture("03_callback_query_inline_keyboard.json")
    press["update_id"] = start["update_id"] + 1
    press["callback_query"]["data"] = "opt:2"
    press["callback_query"]["message"]["chat"]["id"] = chat_id
    assert post(client, press).status_code == 200
    [answered] = fake.calls_to("answerCallbackQuery")
    assert answered.params["callback_query_id"] == press["callback_query"]["id"]
    assert "text" not in answered.params
    _menu_row, choice_row = rows()
    assert choice_row.recipient == str(chat_id) and choice_row.dedupe_key == f"telegram:{press['update_id']}"
    typed = expected_reply("菜单", "2")
    assert typed.intent == "invoice_lookup"
    assert choice_row.payload["text"] == typed.text


def test_foreign_button_data_is_answered_with_a_notice_and_nothing_is_enqueued(client, fake):
    press = fixture("03_callback_query_inline_keyboard.json")  # data "y", from another bot's keyboard
    assert post(client, press).status_code == 200
    [answered] = fake.calls_to("answerCallbackQuery")
    assert answered.params["text"] == telegram_bot.EXPIRED_BUTTON
    assert rows() == []


@pytest.mark.parametrize("name", ["05_photo.json", "06_sticker.json", "07_document_pdf_official.json"])
def test_media_gets_a_polite_reply(client, name):
    update = fixture(name)
    assert post(client, update).status_code == 200
    [row] = rows()
    assert row.recipient == str(update["message"]["chat"]["id"])
    assert row.payload == {"text": MEDIA_TEXT, "options": []}
    assert "文字" in MEDIA_TEXT and "发票号码" in MEDIA_TEXT


def test_edited_message_is_ignored(client):
    assert post(client, fixture("04_edited_message_official.json")).status_code == 200
    assert rows() == []


def test_undecodable_update_is_acknowledged_logged_and_dropped(client, caplog):
    with caplog.at_level(logging.WARNING, logger=views.__name__):
        response = post(client, fixture("90_INVALID_callback_query_official_example.json"))
    assert response.status_code == 200
    assert any("undecodable update" in record.getMessage() for record in caplog.records)
    assert rows() == []


@SQLITE_ONLY
@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"no_update_id": true}'])
def test_junk_bodies_are_acknowledged(client, body):
    assert post(client, body).status_code == 200
    assert rows() == []


# --- webhook: checks ----------------------------------------------------------------------------------------------


@SQLITE_ONLY
@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json"},
        {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": "wrong"},
        {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": ""},
    ],
)
def test_missing_or_wrong_secret_is_forbidden(client, headers):
    response = post(client, text_update(1, "你好"), headers=headers)
    assert response.status_code == 403
    assert response.json()["detail"]
    assert rows() == []


@SQLITE_ONLY
def test_webhook_is_disabled_without_a_configured_secret(client, monkeypatch):
    monkeypatch.delenv("TELEGRAM_SECRET_TOKEN")
    clear_process_caches()
    response = post(client, text_update(1, "你好"), headers={"X-Telegram-Bot-Api-Secret-Token": "None"})
    assert response.status_code == 403
    assert "TELEGRAM_SECRET_TOKEN" in response.json()["detail"]


@SQLITE_ONLY
def test_oversized_body_is_rejected(client):
    huge = text_update(1, "票" * 10)
    huge["message"]["padding"] = "x" * (1024 * 1024)
    assert post(client, huge).status_code == 413
    assert rows() == []


def test_repeated_update_is_handled_once(client):
    update = text_update(424242, "发票号码25112000000098765432查一下")
    assert post(client, update).status_code == 200
    assert post(client, update).status_code == 200
    [row] = rows()
    assert "25112000000098765432" in row.payload["text"]
    with session_scope() as db_session:
        assert db_session.scalar(select(func.count()).select_from(ConversationTurn)) == 1


def test_failed_handling_answers_500_and_the_redelivery_is_handled(client, monkeypatch):
    real_answer = telegram_bot.answer
    calls = []

    def flaky(router, message, *, key):
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        return real_answer(router, message, key=key)

    monkeypatch.setattr(telegram_bot, "answer", flaky)
    update = text_update(5150, "你好")
    assert post(client, update).status_code == 500
    assert rows() == []
    assert post(client, update).status_code == 200
    assert len(rows()) == 1


def test_answer_is_quick_because_nothing_is_sent_inline(client, fake):
    assert post(client, text_update(9, "数电发票怎么红冲")).status_code == 200
    assert fake.calls_to("sendMessage") == []
    assert len(rows()) == 1


# --- rendering ----------------------------------------------------------------------------------------------------


def test_split_text_respects_the_limit_lines_and_characters():
    text = "\n".join(f"第{i}行：" + "发票" * 40 for i in range(200))
    parts = split_text(text)
    assert all(utf16_len(part) <= 4096 for part in parts)
    assert "\n".join(parts) == text
    emoji = "🧾" * 3000  # two UTF-16 units each, one line
    parts = split_text(emoji)
    assert "".join(parts) == emoji and all(utf16_len(part) <= 4096 for part in parts)


def test_keyboard_labels_are_shortened_and_callback_data_stays_small():
    options = [{"label": "非常长的选项" * 20, "payload": "faq:" + "x" * 200} for _ in range(12)]
    [message] = render({"text": "请选择", "options": options})
    buttons = [row[0] for row in message.reply_markup.inline_keyboard]
    assert len(buttons) == 12
    for number, button in enumerate(buttons, 1):
        assert len(button.callback_data.encode()) < MAX_CALLBACK_BYTES
        assert option_number(button.callback_data) == number
        assert button.text.endswith("…") and len(button.text) <= 45


def test_option_number_accepts_only_our_buttons():
    assert option_number("opt:2") == 2
    for data in ["y", "opt:0", "opt:-1", "opt:x", "", None, "opt:2 ", "opt:10000"]:
        assert option_number(data) is None


# --- sender ---------------------------------------------------------------------------------------------------------


def long_payload(options: int = 2) -> dict:
    lines = [f"{i:03d} " + "开票提示服务器繁忙请稍后再试" * 6 for i in range(110)]
    text = "\n".join(lines)[:10_000].ljust(10_000, "。")
    return {"text": text, "options": [{"label": f"选项{i}", "payload": f"faq:t{i}"} for i in range(1, options + 1)]}


def test_sender_delivers_a_long_reply_in_three_parts_with_the_keyboard_last(sender, fake):
    payload = long_payload()
    assert len(payload["text"]) == 10_000
    sender.send("535558561", payload)
    calls = fake.calls_to("sendMessage")
    assert len(calls) == 3
    assert all(len(call.params["text"]) <= 4096 for call in calls)
    assert all(call.params["chat_id"] == 535558561 for call in calls)
    assert "\n".join(call.params["text"] for call in calls) == payload["text"]
    assert [("reply_markup" in call.params) for call in calls] == [False, False, True]
    data = [row[0]["callback_data"] for row in calls[-1].params["reply_markup"]["inline_keyboard"]]
    assert data == ["opt:1", "opt:2"] and all(len(d.encode()) < 64 for d in data)


def test_flood_control_means_retry_later_with_the_servers_delay(sender, fake):
    fake.flood(retry_after=7)
    with pytest.raises(RetryLater) as caught:
        sender.send("42", {"text": "你好", "options": []})
    assert caught.value.retry_after == 7
    sender.send("42", {"text": "你好", "options": []})
    assert len(fake.calls_to("sendMessage")) == 2


def test_a_retry_resumes_after_the_parts_already_delivered(sender, fake):
    payload = long_payload()
    fake.flood(retry_after=1, after=1)  # the first part goes through, the second is refused
    with pytest.raises(RetryLater):
        sender.send("42", payload)
    sender.send("42", payload)
    texts = [call.params["text"] for call in fake.calls_to("sendMessage")]
    parts = [message.text for message in render(payload)]
    assert texts == [parts[0], parts[1], parts[1], parts[2]]
    sender.send("42", payload)  # the same reply again later is sent whole
    assert len(fake.calls_to("sendMessage")) == 7


@pytest.mark.parametrize(
    ("script", "code"),
    [(FakeTelegram.block, "forbidden"), (FakeTelegram.lose_chat, "chat_not_found")],
)
def test_blocked_or_missing_chat_is_undeliverable(sender, fake, script, code):
    script(fake)
    with pytest.raises(Undeliverable) as caught:
        sender.send("42", {"text": "你好", "options": []})
    assert caught.value.code == code


def test_other_bad_requests_are_undeliverable(sender, fake):
    fake.fail_next(400, "Bad Request: can't parse entities")
    with pytest.raises(Undeliverable) as caught:
        sender.send("42", {"text": "你好", "options": []})
    assert caught.value.code == "bad_request"


def test_unreachable_api_and_bad_token_mean_retry_later(fake):
    wrong_token = TelegramSender(token="999:wrong", api_base=fake.api_base, store=MemoryStore())
    nowhere = TelegramSender(token=TOKEN, api_base="http://127.0.0.1:9", store=MemoryStore(), timeout=20)
    for sender in (wrong_token, nowhere):
        with sender, pytest.raises(RetryLater):
            sender.send("42", {"text": "你好", "options": []})


def test_bad_recipient_is_undeliverable(sender):
    with pytest.raises(Undeliverable):
        sender.send("@someone", {"text": "你好", "options": []})


def test_sender_is_safe_from_many_worker_threads(sender, fake):
    errors = []

    def send(chat: int) -> None:
        try:
            sender.send(str(chat), {"text": f"消息 {chat}", "options": []})
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(chat,)) for chat in range(1, 21)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(call.params["chat_id"] for call in fake.calls_to("sendMessage")) == list(range(1, 21))


def test_parts_to_one_chat_are_spaced(fake):
    with TelegramSender(token=TOKEN, api_base=fake.api_base, store=MemoryStore(), per_chat_interval=0.3) as paced:
        started = time.monotonic()
        paced.send("42", long_payload())
        assert time.monotonic() - started >= 0.6
    assert len(fake.calls_to("sendMessage")) == 3


# --- end to end, polling, setWebhook ----------------------------------------------------------------------------------


def test_webhook_to_outbox_to_telegram(client, sender, fake):
    assert post(client, text_update(1, "你好")).status_code == 200
    assert post(client, button_update(2, "opt:3")).status_code == 200
    assert deliver(sender) == 2
    greeting, handoff = fake.calls_to("sendMessage")
    assert greeting.params["reply_markup"]["inline_keyboard"][2][0]["callback_data"] == "opt:3"
    assert without_ticket_number(handoff.params["text"]) == without_ticket_number(expected_reply("你好", "3").text)
    assert all(row.status == SENT for row in rows())


def test_serve_delivers_replies_with_its_own_outbox_worker(telegram_env, monkeypatch):
    """The whole app as `serve` runs it: webhook → outbox → the app's worker → Bot API."""
    monkeypatch.setenv("RUN_WORKER_IN_SERVE", "true")
    monkeypatch.setenv("OUTBOX_POLL_SECONDS", "0.1")
    clear_process_caches()
    fake = telegram_env
    with TestClient(create_app()) as client:
        assert post(client, text_update(7, "人工客服")).status_code == 200
        deadline = time.monotonic() + 10
        while not fake.calls_to("sendMessage") and time.monotonic() < deadline:
            time.sleep(0.05)
    (sent,) = fake.calls_to("sendMessage")
    assert without_ticket_number(sent.params["text"]) == without_ticket_number(expected_reply("人工客服").text)
    assert all(row.status == SENT for row in rows())


def test_polling_handles_queued_updates_and_delivers(telegram_env, sender):
    fake = telegram_env
    fake.queue_update(text_update(700, "你好", chat_id=31337))
    fake.queue_update(text_update(701, "2", chat_id=31337))
    application = telegram_bot.build_application(router=make_router(), polling=True)
    loop = asyncio.new_event_loop()
    done = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            telegram_bot.run_polling(
                router=application.bot_data[telegram_bot.ROUTER_KEY],
                application=application,
                senders={"telegram": sender},
                stop_signals=None,
                close_loop=False,
            )
        finally:
            done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        calls = fake.wait_for("sendMessage", 2, timeout=20)
    finally:
        loop.call_soon_threadsafe(application.stop_running)
        assert done.wait(20)
        thread.join(5)
        loop.close()
    assert [call.params["chat_id"] for call in calls] == [31337, 31337]
    assert calls[1].params["text"] == expected_reply("你好", "2").text
    assert fake.calls_to("deleteWebhook")
    assert [row.dedupe_key for row in rows()] == ["telegram:700", "telegram:701"]


def test_set_webhook_registers_url_secret_and_update_types(telegram_env):
    fake = telegram_env
    assert telegram_bot.set_webhook("https://bot.example.com/telegram") is True
    [call] = fake.calls_to("setWebhook")
    assert call.params["url"] == "https://bot.example.com/telegram"
    assert call.params["secret_token"] == SECRET
    assert call.params["allowed_updates"] == ["message", "callback_query"]


def test_decoding_does_not_need_the_network():
    """The Update→action functions work on parsed updates alone."""
    from telegram import Update

    update = Update.de_json(copy.deepcopy(button_update(3, "opt:2")), None)
    assert telegram_bot.choice_text(update) == "2"
    assert telegram_bot.private_chat_id(update) == 777001
    message = telegram_bot.incoming(update, "2")
    assert (message.channel, message.user_id, message.text) == ("telegram", "777001", "2")
    group = button_update(4, "opt:1")
    group["callback_query"]["message"]["chat"] = {"id": -100, "type": "group", "title": "g"}
    assert telegram_bot.choice_text(Update.de_json(group, None)) is None
