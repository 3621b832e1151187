"""Messages pulled by merchants' own clients, on each database: an agent's reply and the rating question reach chat
API callers (GET /api/chat/messages and the /api/chat/stream events) and the web chat page at /chat, delivered when
fetched and never to anyone else."""

import json
import threading
import time
from urllib.parse import urlencode

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.app import create_app
from bot.channels import pull
from bot.channels.web import views as web
from core.conversation.models import ConversationTurn
from core.database import session_scope
from core.outbox.models import OutboxMessage
from tests.conftest import make_integration
from ticketing import lifecycle, replies, staff
from ticketing.models import Ticket

REPLY = "您好，我是客服小王，发票正在重新开具。"
ORIGIN = {"Origin": "http://testserver"}


@pytest.fixture
def app(app_env, monkeypatch):
    monkeypatch.setenv("MATCHER_EMBEDDINGS", "false")
    monkeypatch.setenv("INBOUND_MESSAGES_PER_MINUTE", "0")
    monkeypatch.setattr(staff, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    monkeypatch.setattr(pull, "STREAM_SECONDS", 8.0)  # a stream that never gets its event ends the test, not hangs
    monkeypatch.setattr(pull, "HEARTBEAT_SECONDS", 1.0)
    from tests.conftest import clear_process_caches

    clear_process_caches()
    return create_app()


@pytest.fixture
def client(app):
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def shop(client):
    return make_integration("shop")


def agent(name: str = "alice") -> int:
    with session_scope() as db_session:
        return staff.create(db_session=db_session, username=name, password="correct horse", role="agent").id


def ticket_of(channel: str, user_id: str) -> int:
    with session_scope() as db_session:
        query = select(Ticket.id).where(Ticket.channel == channel, Ticket.user_id == user_id)
        return db_session.scalars(query).one()


def reply_as_agent(ticket_id: int, agent_id: int, text: str = REPLY) -> int:
    with session_scope() as db_session:
        return replies.send(db_session=db_session, ticket_id=ticket_id, agent_id=agent_id, text=text).id


def delivery_status(transcript_line_id: int) -> str:
    with session_scope() as db_session:
        return replies.delivery(db_session=db_session, message_id=transcript_line_id).status


def api_post(client, caller, user_id: str, text: str) -> dict:
    response = client.post("/api/chat", json={"user_id": user_id, "text": text}, headers=caller.headers)
    assert response.status_code == 200, response.text
    return response.json()


def api_messages(client, caller, user_id: str, after: int = 0) -> list[dict]:
    response = client.get("/api/chat/messages", params={"user_id": user_id, "after": after}, headers=caller.headers)
    assert response.status_code == 200, response.text
    return response.json()


def first_event(client, url: str, **kwargs) -> dict:
    """The data of the first message event of a server-sent events stream."""
    with client.stream("GET", url, **kwargs) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        event_id = None
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            if line.startswith("data: "):
                data = json.loads(line[6:])
                assert data["id"] == event_id
                return data
    raise AssertionError("the stream ended without a message")


def later(delay: float, action) -> threading.Thread:
    """Run `action` on a thread after `delay` seconds (while the test reads a stream)."""

    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# --- chat API ----------------------------------------------------------------------------------------------------


def test_an_agents_reply_reaches_the_api_caller_when_fetched_and_no_one_else(client, shop):
    api_post(client, shop, "alice", "开票提示服务器繁忙")
    assert api_post(client, shop, "alice", "转人工")["intent"] == "handoff"
    ticket_id = ticket_of("api", "shop:alice")
    line = reply_as_agent(ticket_id, agent())
    assert delivery_status(line) == "pending"
    [message] = api_messages(client, shop, "alice")
    assert (message["text"], message["options"]) == (REPLY, [])
    assert set(message) == {"id", "text", "options", "created_at"}
    assert delivery_status(line) == "sent", "fetched means delivered: the console shows it sent"
    assert api_messages(client, shop, "alice", after=message["id"]) == []
    assert api_messages(client, shop, "bob") == [], "another user of the integration sees nothing"
    other = make_integration("other")
    assert api_messages(client, other, "alice") == [], "nor does the same user id of another integration"
    signed = client.get("/api/chat/messages", params=shop.signed("alice"))
    assert [m["text"] for m in signed.json()] == [REPLY], "a browser widget reads with the signed identity"
    forged = {**shop.signed("bob"), "user_id": "alice"}
    assert client.get("/api/chat/messages", params=forged).status_code == 401
    assert client.get("/api/chat/messages", params={"user_id": "alice"}).status_code == 401


def test_the_rating_question_after_resolve_arrives_through_the_pull(client, shop):
    api_post(client, shop, "carol", "转人工")
    ticket_id = ticket_of("api", "shop:carol")
    alice = agent()
    reply_as_agent(ticket_id, alice, "已为您处理")
    with session_scope() as db_session:
        lifecycle.resolve(db_session=db_session, ticket_id=ticket_id, actor_id=alice)
    texts = [m["text"] for m in api_messages(client, shop, "carol")]
    assert texts == ["已为您处理", lifecycle.CSAT_QUESTION]
    assert api_post(client, shop, "carol", "5")["text"] == replies.CSAT_THANKS
    with session_scope() as db_session:
        assert db_session.get(Ticket, ticket_id).csat_score == 5


def test_the_stream_sends_what_waits_then_what_an_agent_sends_live(client, shop, monkeypatch):
    monkeypatch.setattr(pull, "HEARTBEAT_SECONDS", 30.0)  # only the live notice can wake the stream in time
    api_post(client, shop, "dave", "转人工")
    ticket_id = ticket_of("api", "shop:dave")
    alice = agent()
    reply_as_agent(ticket_id, alice, "第一条")
    waiting = first_event(client, "/api/chat/stream?user_id=dave", headers=shop.headers)
    assert waiting["text"] == "第一条"
    sender = later(0.5, lambda: reply_as_agent(ticket_id, alice, "第二条"))
    started = time.monotonic()
    live = first_event(client, f"/api/chat/stream?{urlencode(shop.signed('dave'))}&after={waiting['id']}")
    assert live["text"] == "第二条" and live["id"] > waiting["id"]
    assert time.monotonic() - started < 5, "woken by the live notice, not a late poll"
    sender.join()
    resumed = first_event(client, "/api/chat/stream?user_id=dave", headers={**shop.headers, "Last-Event-ID": "0"})
    assert resumed["text"] == "第一条", "Last-Event-ID resumes a reconnecting client"


def test_a_lost_live_notice_only_delays_a_message_to_the_next_heartbeat(client, shop, monkeypatch):
    from core import events

    api_post(client, shop, "ivan", "转人工")
    ticket_id = ticket_of("api", "shop:ivan")
    alice = agent()
    monkeypatch.setattr(events, "publish", lambda *args, **kwargs: None)  # the store lost every notice
    later(0.5, lambda: reply_as_agent(ticket_id, alice, "心跳时补发"))
    started = time.monotonic()
    assert first_event(client, "/api/chat/stream?user_id=ivan", headers=shop.headers)["text"] == "心跳时补发"
    assert time.monotonic() - started < 5


def test_the_stream_sends_a_long_backlog_whole_and_the_list_in_pages(client, shop, monkeypatch):
    from core.outbox import service as outbox

    monkeypatch.setattr(pull, "HEARTBEAT_SECONDS", 30.0)  # all at once, not the rest at the next heartbeat

    count = outbox.PULL_LIMIT + 5
    with session_scope() as db_session:
        for number in range(count):
            outbox.enqueue(db_session=db_session, channel="api", recipient="shop:zed", text=f"通知 {number}")
    listed = api_messages(client, shop, "zed")
    assert len(listed) == outbox.PULL_LIMIT
    rest = api_messages(client, shop, "zed", after=listed[-1]["id"])
    assert [m["text"] for m in rest] == [f"通知 {number}" for number in range(outbox.PULL_LIMIT, count)]
    streamed, started = [], time.monotonic()
    with client.stream("GET", "/api/chat/stream?user_id=zed", headers=shop.headers) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                streamed.append(json.loads(line[6:])["text"])
                if len(streamed) == count:
                    break
    assert streamed == [f"通知 {number}" for number in range(count)] and time.monotonic() - started < 5


def test_a_stream_never_carries_another_users_messages(client, shop):
    api_post(client, shop, "erin", "转人工")
    ticket_id = ticket_of("api", "shop:erin")
    alice = agent()
    later(0.3, lambda: reply_as_agent(ticket_id, alice, "给 erin"))
    later(1.0, lambda: api_post(client, shop, "frank", "转人工"))
    later(1.5, lambda: reply_as_agent(ticket_of("api", "shop:frank"), alice, "给 frank"))
    assert first_event(client, "/api/chat/stream?user_id=frank", headers=shop.headers)["text"] == "给 frank"


def test_openapi_documents_fetching_and_streaming(client):
    paths = client.get("/openapi.json").json()["paths"]
    listed = paths["/api/chat/messages"]["get"]
    assert {p["name"] for p in listed["parameters"]} >= {"user_id", "after", "integration", "expires", "signature"}
    assert "MessageOut" in json.dumps(listed["responses"]["200"])
    assert "text/event-stream" in paths["/api/chat/stream"]["get"]["responses"]["200"]["content"]
    assert "/chat/messages" in paths and "/chat/stream" in paths


# --- web chat ------------------------------------------------------------------------------------------------------


def visitor(app) -> TestClient:
    """A new browser: its own cookie jar, with the page loaded (which sets its visitor cookie). (The app was started
    by the `client` fixture: this client does not run its lifespan again.)"""
    browser = TestClient(app)
    page = browser.get("/chat")
    assert page.status_code == 200
    return browser


def say(browser: TestClient, text: str | None = None, *, payload: str | None = None, headers=ORIGIN):
    body = {"text": text} if payload is None else {"payload": payload}
    return browser.post("/chat/messages", json=body, headers=headers)


def test_the_chat_page_sets_a_private_visitor_cookie_and_loads_nothing_from_elsewhere(client):
    page = client.get("/chat")
    assert page.status_code == 200 and "发票助手" in page.text
    cookie = page.headers["set-cookie"]
    assert cookie.startswith(f"{web.COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "http://" not in page.text and "https://" not in page.text, "no CDN"
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors *" in policy
    assert client.get("/chat").headers.get("set-cookie") is None, "a returning visitor keeps its cookie"
    assert client.get("/chat/static/chat.js").status_code == 200
    assert client.get("/chat/static/chat.css").status_code == 200


def test_a_visitor_chats_with_the_bot_under_a_hashed_identity(app, client):
    browser = visitor(app)
    greeting = say(browser, "你好")
    assert greeting.status_code == 200, greeting.text
    body = greeting.json()
    assert body["intent"] == "greeting" and body["text"] and body["options"]
    chosen = say(browser, payload=body["options"][0]["payload"])
    assert chosen.status_code == 200 and chosen.json()["intent"] != "fallback", "an option button answers"
    assert say(browser, payload="faq:does-not-exist").json()["text"] == web.EXPIRED_OPTION
    assert say(browser, "发票开错了怎么办😭🧾").status_code == 200, "emoji are fine"
    token = browser.cookies[web.COOKIE]
    with session_scope() as db_session:
        identities = set(db_session.execute(select(ConversationTurn.channel, ConversationTurn.user_id)))
    assert identities == {("web", web.visitor_id(token))} and token not in str(identities)


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"text": "   "}, 422, web.EMPTY_TEXT),
        ({}, 422, web.EMPTY_TEXT),
        ({"text": "票" * 20001}, 422, "string_too_long"),
        ({"payload": "x" * 201}, 422, "string_too_long"),
    ],
)
def test_bad_input_is_refused_with_a_reason(app, client, body, status, reason):
    browser = visitor(app)
    response = browser.post("/chat/messages", json=body, headers=ORIGIN)
    assert response.status_code == status
    assert reason in json.dumps(response.json(), ensure_ascii=False)


def test_a_post_from_another_site_or_without_the_cookie_is_refused(app, client):
    browser = visitor(app)
    assert say(browser, "你好", headers={}).status_code == 403
    assert say(browser, "你好", headers={"Origin": "https://evil.example"}).status_code == 403
    assert say(browser, "你好", headers={"Referer": "http://testserver/chat"}).status_code == 200
    stranger = TestClient(app)
    refused = say(stranger, "你好")
    assert refused.status_code == 401 and refused.json()["detail"] == web.SESSION_LOST
    assert stranger.get("/chat/messages").status_code == 401


def test_an_agents_reply_reaches_the_page_and_only_that_visitor(app, client):
    merchant, other = visitor(app), visitor(app)
    assert say(merchant, "转人工").json()["intent"] == "handoff"
    user_id = web.visitor_id(merchant.cookies[web.COOKIE])
    ticket_id = ticket_of("web", user_id)
    alice = agent()
    line = reply_as_agent(ticket_id, alice)
    assert other.get("/chat/messages").json() == []
    assert [m["text"] for m in merchant.get("/chat/messages").json()] == [REPLY]
    assert delivery_status(line) == "sent"
    later(0.5, lambda: reply_as_agent(ticket_id, alice, "还有什么可以帮您？"))
    latest = merchant.get("/chat/messages").json()[-1]["id"]
    assert first_event(merchant, f"/chat/stream?after={latest}")["text"] == "还有什么可以帮您？"
    with session_scope() as db_session:
        lifecycle.resolve(db_session=db_session, ticket_id=ticket_id, actor_id=alice)
    assert first_event(merchant, "/chat/stream", headers={"Last-Event-ID": "0"})["text"] == REPLY
    rating = merchant.get("/chat/messages").json()[-1]
    assert rating["text"] == lifecycle.CSAT_QUESTION
    assert say(merchant, "5 很满意").json()["text"] == replies.CSAT_THANKS
    assert other.get("/chat/messages").json() == []
    with session_scope() as db_session:
        statuses = set(db_session.scalars(select(OutboxMessage.status).where(OutboxMessage.recipient == user_id)))
    assert statuses == {"sent"}


def test_an_integration_opens_the_page_for_its_own_signed_user(app, client, shop):
    signed = urlencode(shop.signed("gina"))
    browser = TestClient(app)
    page = browser.get(f"/chat?{signed}")
    assert page.status_code == 200 and "set-cookie" not in page.headers
    assert 'data-query="integration=shop&amp;user_id=gina&amp;expires=' in page.text, "the page signs its calls"
    assert browser.post(f"/chat/messages?{signed}", json={"text": "转人工"}, headers=ORIGIN).status_code == 200
    ticket_id = ticket_of("api", "shop:gina")
    reply_as_agent(ticket_id, agent())
    assert [m["text"] for m in browser.get(f"/chat/messages?{signed}").json()] == [REPLY]
    assert [m["text"] for m in api_messages(client, shop, "gina")] == [REPLY], "the same identity as the API"
    forged = signed.replace("gina", "hana")
    refused = browser.get(f"/chat?{forged}")
    assert refused.status_code == 401 and web.SIGNATURE_REFUSED in refused.text
    assert browser.get(f"/chat/messages?{forged}").status_code == 401
