"""Metrics, readiness, request ids and scrubbed JSON logs; a store outage degrades answers instead of failing."""

import json
import logging
import sys

import pytest
from fastapi.testclient import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.app import create_app
from core.logs import REQUEST_ID, ScrubFilter, configure, scrub

ADMIN = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
def client(app_env, api_caller):
    with TestClient(create_app(), headers=api_caller.headers) as test_client:
        yield test_client


def metric(body: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text, 0 when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in body.splitlines():
        if line.startswith(f"{name}{{{wanted}}}" if labels else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_messages_by_channel_and_intent(client):
    before = metric(client.get("/metrics").text, "merchant_assist_messages_total", channel="api", intent="greeting")
    client.post("/api/chat", json={"user_id": "m", "text": "你好"})
    body = client.get("/metrics").text
    assert metric(body, "merchant_assist_messages_total", channel="api", intent="greeting") == before + 1
    assert "merchant_assist_match_seconds_bucket" in body
    assert "merchant_assist_outbox_backlog" in body


def test_metrics_token_is_enforced_when_set(client, monkeypatch):
    from core.settings import get_settings

    monkeypatch.setenv("METRICS_TOKEN", "scrape-secret")
    get_settings.cache_clear()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"}).status_code == 200


def test_readyz_reports_database_and_store(client, monkeypatch):
    assert client.get("/readyz").json() == {"status": "ready"}
    from core.store import get_store

    def down():
        raise RedisConnectionError("refused")

    monkeypatch.setattr(get_store(), "ping", down)
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["problems"] == {"store": "ConnectionError"}
    assert client.get("/healthz").status_code == 200, "the process itself is fine"


def test_request_id_is_echoed_or_made(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["X-Request-ID"]
    assert made != "bad id with spaces" and len(made) == 16


def test_store_outage_degrades_answers_and_is_counted(client, monkeypatch):
    from core.store import get_store

    store = get_store()

    def broken(*args, **kwargs):
        raise RedisConnectionError("Redis is down")

    monkeypatch.setattr(store, "get_json", broken)
    monkeypatch.setattr(store, "set_json", broken)
    before = metric(client.get("/metrics").text, "merchant_assist_degraded_total")
    reply = client.post("/api/chat", json={"user_id": "m", "text": "发票开错了怎么作废"})
    assert reply.status_code == 200 and reply.json()["text"]
    assert metric(client.get("/metrics").text, "merchant_assist_degraded_total") == before + 2


def test_database_outage_is_a_503_with_a_reason(client, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def broken(*args, **kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(client.app.state, "message_router", type("R", (), {"handle": broken})())
    response = client.post("/api/chat", json={"user_id": "m", "text": "你好"})
    assert response.status_code == 503 and "database" in response.json()["detail"]


def test_logs_are_json_with_request_id_and_masked(capsys):

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure(level=logging.INFO, fmt="json")
        token = REQUEST_ID.set("req-1")
        logging.getLogger("test").info("税号 %s 手机 %s", "91110108MA01ABCD5T", "13812345678")
        REQUEST_ID.reset(token)
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["request_id"] == "req-1" and line["level"] == "INFO"
    assert "91110108MA01ABCD5T" not in line["message"] and "13812345678" not in line["message"]


@pytest.mark.parametrize(
    "secret",
    [
        "https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage",
        "POST /cgi-bin/message/custom/send?access_token=ACCESS_TOKEN_VALUE_123",
        "Authorization: Bearer my-admin-token-value",
    ],
)
def test_tokens_are_masked(secret):
    scrubbed = scrub(secret)
    assert all(
        part not in scrubbed
        for part in ("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "ACCESS_TOKEN_VALUE_123", "my-admin-token-value")
    )


def _log_line(capsys, fmt: str, *, tty: bool, monkeypatch) -> str:
    """The last line one uvicorn-style record (with a coloured copy of its message) writes in format `fmt`."""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty, raising=False)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure(level=logging.INFO, fmt=fmt)
        coloured = "Uvicorn running on \x1b[1mhttp://127.0.0.1:8000\x1b[0m"
        logging.getLogger("uvicorn.error").info(
            "Uvicorn running on %s", "http://127.0.0.1:8000", extra={"color_message": coloured}
        )
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_logs_on_a_terminal_are_plain_text_and_json_elsewhere(capsys, monkeypatch):
    on_terminal = _log_line(capsys, "auto", tty=True, monkeypatch=monkeypatch)
    assert on_terminal.endswith("Uvicorn running on http://127.0.0.1:8000") and not on_terminal.startswith("{")
    piped = json.loads(_log_line(capsys, "auto", tty=False, monkeypatch=monkeypatch))
    assert piped["message"] == "Uvicorn running on http://127.0.0.1:8000"
    forced = json.loads(_log_line(capsys, "json", tty=True, monkeypatch=monkeypatch))
    assert forced["logger"] == "uvicorn.error"


def test_no_terminal_colour_codes_reach_the_logs(capsys, monkeypatch):
    for fmt in ("json", "text"):
        assert "\x1b" not in _log_line(capsys, fmt, tty=False, monkeypatch=monkeypatch)


def test_scrub_filter_keeps_records_with_bad_format_strings():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "broken %s %s", ("only one",), None)
    assert ScrubFilter().filter(record) and "broken" in record.msg


@pytest.mark.parametrize("path", ["/api/chat", "/api/invoices", "/api/admin/faq/import"])
def test_oversized_bodies_are_refused_before_they_are_read(client, path):
    declared = client.post(path, content=b"x" * 10, headers={"Content-Length": str(50 * 1024 * 1024)} | ADMIN)
    assert declared.status_code == 413

    def chunks():
        for _ in range(5):
            yield b"{" * (1024 * 1024)

    streamed = client.post(path, content=chunks(), headers=ADMIN)
    assert streamed.status_code == 413
