"""The staff console over HTTP on each database: login, sessions and brute-force limits, the route table's guards,
CSRF, the agent's ticket flow through the ticketing services, and the admin pages (users, audit log, canned replies)."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

import fastapi.routing
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.app import create_app
from console import auth, logins, templating
from console.errors import LOGIN_PATH
from core.clock import utc
from core.database import get_engine, session_scope
from core.outbox.models import OutboxMessage
from ticketing import handoff as ticket_handoff
from ticketing import lifecycle, replies, service, staff
from ticketing.incident_models import Incident
from ticketing.models import ASSIGNED, CLOSED, HANDED_BACK, NEW, RESOLVED, StaffUser, Ticket, TicketEvent

PASSWORD = "correct horse battery"
SESSION_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


# --- the application -----------------------------------------------------------------------------------------


def flat_routes(app: FastAPI) -> list:
    """Every route of the app with its full path, through included routers (FastAPI ≥ 0.13x keeps them nested)."""
    walk = getattr(fastapi.routing, "iter_route_contexts", None)
    return list(walk(app.routes)) if walk is not None else list(app.routes)


def console_app() -> FastAPI:
    """The real application, console included."""
    return create_app()


@dataclass
class Console:
    """The app under test and its lifespan-running client."""

    app: FastAPI
    client: TestClient

    def browser(self, base_url: str = "http://testserver") -> TestClient:
        """Another browser: its own cookies, redirects not followed."""
        return TestClient(self.app, base_url=base_url, follow_redirects=False)


@pytest.fixture
def console(app_env, monkeypatch) -> Iterator[Console]:
    """The application on a fresh database of each kind, workers off, cheap argon2 parameters for speed."""
    monkeypatch.setattr(staff, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    monkeypatch.setenv("RUN_WORKER_IN_SERVE", "false")
    from tests.conftest import clear_process_caches

    clear_process_caches()
    app = console_app()
    with TestClient(app, follow_redirects=False) as client:
        yield Console(app, client)
    get_engine().dispose()


# --- helpers -------------------------------------------------------------------------------------------------


def make_user(username: str, *, role: str = "agent", password: str = PASSWORD, capacity: int = 5) -> int:
    with session_scope() as db_session:
        return staff.create(
            db_session=db_session, username=username, password=password, role=role, capacity=capacity
        ).id


def login(client: TestClient, username: str, password: str = PASSWORD, next_path: str = ""):
    page = client.get("/console/login")
    assert page.status_code == 200, page.text
    token = SESSION_TOKEN.search(page.text).group(1)
    return client.post(
        "/console/login", data={"username": username, "password": password, "csrf_token": token, "next": next_path}
    )


def logged_in(console: Console, username: str, role: str = "agent", **kwargs) -> tuple[TestClient, int]:
    """A new browser logged in as a new account."""
    user_id = make_user(username, role=role, **kwargs)
    client = console.browser()
    assert login(client, username).status_code == 303
    return client, user_id


def csrf_of(client: TestClient) -> str:
    page = client.get("/console/queue")
    assert page.status_code == 200, page.text
    return SESSION_TOKEN.search(page.text).group(1)


def post(client: TestClient, path: str, data: dict | None = None, **kwargs):
    return client.post(path, data={"csrf_token": csrf_of(client), **(data or {})}, **kwargs)


def handoff(user_id: str, *, channel: str = "telegram", text: str = "转人工，发票开不出来", **kwargs) -> int:
    with session_scope() as db_session:
        found = ticket_handoff.open_for_handoff(
            db_session=db_session, channel=channel, user_id=user_id, text=text, **kwargs
        )
        return found.ticket.id


def fetch(ticket_id: int) -> Ticket:
    with session_scope() as db_session:
        return db_session.get(Ticket, ticket_id)


def outbox(channel: str, recipient: str) -> list[str]:
    with session_scope() as db_session:
        query = select(OutboxMessage).where(OutboxMessage.channel == channel, OutboxMessage.recipient == recipient)
        return [row.payload["text"] for row in db_session.scalars(query.order_by(OutboxMessage.id))]


def events(ticket_id: int | None = None) -> list[TicketEvent]:
    with session_scope() as db_session:
        return list(reversed(service.get_events(db_session=db_session, ticket_id=ticket_id, limit=1000)))


def session_token(client: TestClient) -> str | None:
    return client.cookies.get(logins.COOKIE)


def flashes(page) -> list[str]:
    return re.findall(r'class="flash flash-\w+"[^>]*>([^<]*)<', page.text)


# --- login, sessions, brute force ----------------------------------------------------------------------------


def test_login_opens_a_session_and_the_console_shows_the_user(console):
    make_user("alice")
    client = console.browser()
    anonymous = client.get("/console/queue?state=new")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/console/login?next=/console/queue%3Fstate%3Dnew"
    done = login(client, "Alice", next_path="/console/queue?state=new")
    assert done.status_code == 303 and done.headers["location"] == "/console/queue?state=new"
    cookie = done.headers["set-cookie"]
    assert cookie.startswith(f"{logins.COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie, "plain http (tests): no Secure flag"
    page = client.get("/console/queue")
    assert page.status_code == 200 and "alice" in page.text and "工单队列" in page.text and "退出登录" in page.text
    assert "/console/admin/users" not in page.text, "agents do not see admin links"
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    token = session_token(client)
    stored = logins.get_store().get_json(logins.KEY + token)
    assert stored["staff_id"] and stored["csrf"] and "password" in stored
    assert client.get("/console/login").headers["location"] == "/console/queue", "logged in: straight on"
    assert [e.action for e in events() if e.action == "staff_login"] == ["staff_login"]


def test_site_root_leads_to_the_console_login(console):
    client = console.browser()
    root = client.get("/")
    assert root.status_code in (302, 307) and root.headers["location"] == "/console"
    onward = client.get(root.headers["location"])
    assert onward.status_code == 303 and onward.headers["location"].startswith(LOGIN_PATH)
    assert client.get(onward.headers["location"]).status_code == 200
    assert client.get("/healthz").json() == {"status": "ok"}, "the operations routes stay where they were"
    assert client.get("/docs").status_code == 200


def test_session_cookie_is_secure_over_https(console):
    make_user("alice")
    client = console.browser("https://testserver")
    done = login(client, "alice")
    assert done.status_code == 303
    assert "Secure" in done.headers["set-cookie"] and "HttpOnly" in done.headers["set-cookie"]


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "/api/chat"])
def test_login_only_returns_to_console_paths(console, target):
    make_user("alice")
    client = console.browser()
    assert login(client, "alice", next_path=target).headers["location"] == "/console/queue"


def test_wrong_password_and_unknown_user_fail_alike(console):
    make_user("alice")
    client = console.browser()
    wrong = login(client, "alice", "wrong password")
    unknown = login(client, "nobody", PASSWORD)
    for page in (wrong, unknown):
        assert page.status_code == 401 and "用户名或密码错误" in page.text
        assert logins.COOKIE not in page.headers.get("set-cookie", "")
    assert session_token(client) is None
    assert client.get("/console/queue").status_code == 303


def test_brute_force_is_limited_per_username(console, store, monkeypatch):
    monkeypatch.setattr(logins, "get_store", lambda: store)  # the counters in each store kind
    make_user("alice")
    make_user("bob")
    client = console.browser()
    for _ in range(auth.MAX_USER_FAILURES):
        assert login(client, "alice", "wrong password").status_code == 401
    locked = login(client, "alice")
    assert locked.status_code == 429 and "登录失败次数过多" in locked.text and locked.headers["retry-after"]
    assert session_token(client) is None, "even the right password is refused while locked"
    assert login(client, "bob").status_code == 303, "other accounts from the same address still log in"


def test_brute_force_is_limited_per_client_address(console):
    make_user("alice")
    for _ in range(auth.MAX_IP_FAILURES + 1):
        assert login(console.browser(), "alice").status_code == 303, "successful logins are not charged"
    client = console.browser()
    for n in range(auth.MAX_IP_FAILURES):
        assert login(client, f"guess{n}", "wrong password").status_code == 401
    assert login(client, "alice").status_code == 429


def test_login_without_the_form_token_or_from_another_site_is_refused(console):
    make_user("alice")
    client = console.browser()
    client.get("/console/login")
    data = {"username": "alice", "password": PASSWORD}
    assert client.post("/console/login", data=data).status_code == 403
    assert client.post("/console/login", data={**data, "csrf_token": "x" * 43}).status_code == 403
    token = client.cookies.get("ma_login_csrf")
    cross = client.post(
        "/console/login", data={**data, "csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert session_token(client) is None


def test_logout_ends_the_session(console):
    client, _ = logged_in(console, "alice")
    token = session_token(client)
    done = post(client, "/console/logout")
    assert done.status_code == 303 and done.headers["location"] == "/console/login"
    assert logins.get_store().get(logins.KEY + token) is None
    replay = console.browser()
    replay.cookies.set(logins.COOKIE, token, domain="testserver.local")
    assert replay.get("/console/queue").status_code == 303, "the old cookie no longer works"


def test_login_rotates_the_session_id(console):
    make_user("alice")
    make_user("bob")
    client = console.browser()
    client.cookies.set(logins.COOKIE, "planted-by-an-attacker", domain="testserver.local")
    assert login(client, "alice").status_code == 303
    first = session_token(client)
    assert first != "planted-by-an-attacker"
    # Logging in again over a live session (the login page itself would send a logged-in browser on).
    form_token = "t" * 43
    client.cookies.set("ma_login_csrf", form_token, domain="testserver.local", path="/console/login")
    again = client.post("/console/login", data={"username": "bob", "password": PASSWORD, "csrf_token": form_token})
    assert again.status_code == 303
    second = session_token(client)
    assert second != first
    assert logins.load(first) is None, "the previous session ended"
    assert "bob" in client.get("/console/queue").text


def test_disabling_a_user_or_resetting_the_password_ends_their_sessions(console):
    agent, agent_id = logged_in(console, "alice")
    admin, _ = logged_in(console, "root", role="admin")
    assert agent.get("/console/queue").status_code == 200
    assert post(admin, f"/console/admin/users/{agent_id}/disable").status_code == 303
    kicked = agent.get("/console/queue")
    assert kicked.status_code == 303 and kicked.headers["location"].startswith("/console/login")
    assert agent.post("/console/presence", data={"online": "1"}).status_code == 401
    assert login(console.browser(), "alice").status_code == 401, "disabled accounts cannot log in"
    assert post(admin, f"/console/admin/users/{agent_id}/enable").status_code == 303
    agent = console.browser()
    assert login(agent, "alice").status_code == 303
    assert post(admin, f"/console/admin/users/{agent_id}/password", {"password": "a new password"}).status_code == 303
    assert agent.get("/console/queue").status_code == 303, "a password reset ends the old sessions"
    assert login(console.browser(), "alice", "a new password").status_code == 303


def test_sessions_live_in_each_store(console, store, monkeypatch):
    monkeypatch.setattr(logins, "get_store", lambda: store)
    client, user_id = logged_in(console, "alice")
    token = session_token(client)
    assert store.get_json(logins.KEY + token)["staff_id"] == user_id
    assert client.get("/console/queue").status_code == 200
    post(client, "/console/logout")
    assert store.get(logins.KEY + token) is None


# --- guards on every console route ---------------------------------------------------------------------------


def _console_routes(app: FastAPI) -> list[tuple[str, str]]:
    found = []
    for route in flat_routes(app):
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if not path or not methods or not path.startswith("/console") or path == LOGIN_PATH:
            continue  # mounts (static files) have no methods
        found += [(path, method) for method in sorted(methods)]
    return found


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_console_route_refuses_anonymous_requests_and_admin_routes_refuse_agents(console):
    routes = _console_routes(console.app)
    paths = {path for path, _ in routes}
    assert {"/console/queue", "/console/tickets/{ticket_id}/reply", "/console/admin/users", "/console/logout"} <= paths
    handoff("4242")
    anonymous = console.browser()
    for path, method in routes:
        response = anonymous.request(method, _url(path))
        if method in ("GET", "HEAD"):
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith("/console/login"), (method, path)
        else:
            assert response.status_code == 401, (method, path, response.status_code)
    agent, _ = logged_in(console, "alice")
    token = csrf_of(agent)
    admin_routes = [(path, method) for path, method in routes if path.startswith("/console/admin")]
    assert len(admin_routes) >= 10
    for path, method in admin_routes:
        # A valid CSRF token: the refusal must come from the role check, not from CSRF.
        response = agent.request(method, _url(path), headers={"X-CSRF-Token": token})
        assert response.status_code == 403, (method, path, response.status_code)
    page = agent.get("/console/admin/users")
    assert "仅限管理员" in page.text and "<html" in page.text


def test_admins_see_every_admin_link(console):
    admin, _ = logged_in(console, "root", role="admin")
    page = admin.get("/console/admin/users")
    assert page.status_code == 200
    for href in (
        "/console/queue",
        "/console/admin/faq",
        "/console/admin/unanswered",
        "/console/admin/guides",
        "/console/admin/analytics",
        "/console/admin/incidents",
        "/console/admin/users",
        "/console/admin/audit",
    ):
        assert f'href="{href}"' in page.text
    assert admin.get("/console/static/console.css").status_code == 200


def test_every_console_template_is_found_in_the_one_template_folder():
    env = templating.templates.env
    assert env.loader.searchpath == [str(templating.TEMPLATE_DIR)]
    names = env.list_templates()
    assert {
        "base.html",
        "login.html",
        "queue.html",
        "ticket.html",
        "admin_faq_list.html",
        "admin_unanswered.html",
    } <= set(names)
    for name in names:
        env.get_template(name)  # parses, and every template it extends or imports resolves
    assert env.get_template("base.html").blocks.keys() >= {"title", "content"}


# --- CSRF ----------------------------------------------------------------------------------------------------


def test_state_changing_posts_need_the_session_csrf_token(console):
    client, user_id = logged_in(console, "alice")
    token = csrf_of(client)
    assert client.post("/console/presence", data={"online": "1"}).status_code == 403
    assert client.post("/console/presence", data={"online": "1", "csrf_token": "forged"}).status_code == 403
    other, _ = logged_in(console, "bob")
    assert client.post("/console/presence", data={"online": "1", "csrf_token": csrf_of(other)}).status_code == 403
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        refused = client.post("/console/presence", data={"online": "1", "csrf_token": token}, headers=headers)
        assert refused.status_code == 403, headers
    with session_scope() as db_session:
        assert not db_session.get(StaffUser, user_id).online, "nothing changed"
    same_site = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    done = client.post("/console/presence", data={"online": "1", "csrf_token": token}, headers=same_site)
    assert done.status_code == 303
    assert client.post("/console/presence", data={"online": "0"}, headers={"X-CSRF-Token": token}).status_code == 303
    with session_scope() as db_session:
        assert not db_session.get(StaffUser, user_id).online


# --- the agent's flow ----------------------------------------------------------------------------------------


def test_agent_takes_replies_notes_tags_resolves_and_hands_back(console):
    client, alice = logged_in(console, "alice")
    ticket_id = handoff("4242")
    queue_page = client.get("/console/queue")
    assert queue_page.status_code == 200 and fetch(ticket_id).number in queue_page.text
    assert "sla-" in queue_page.text and "剩余" in queue_page.text

    assert post(client, f"/console/tickets/{ticket_id}/take").status_code == 303
    assert (fetch(ticket_id).state, fetch(ticket_id).assignee_id) == (ASSIGNED, alice)

    sent = post(client, f"/console/tickets/{ticket_id}/reply", {"text": "您好，我是客服，正在为您查询"})
    assert sent.status_code == 303 and sent.headers["location"] == f"/console/tickets/{ticket_id}"
    assert outbox("telegram", "4242") == ["您好，我是客服，正在为您查询"]

    assert post(client, f"/console/tickets/{ticket_id}/note", {"text": "商户税号待核实"}).status_code == 303
    assert post(client, f"/console/tickets/{ticket_id}/tags", {"tags": "开票失败，VIP"}).status_code == 303
    page = client.get(f"/console/tickets/{ticket_id}")
    assert page.status_code == 200
    assert "您好，我是客服，正在为您查询" in page.text and "商户税号待核实" in page.text
    assert "开票失败" in page.text and "VIP" in page.text and "回复已发送" not in page.text
    assert "转人工，发票开不出来" in page.text, "the transcript"

    assert post(client, f"/console/tickets/{ticket_id}/resolve").status_code == 303
    assert fetch(ticket_id).state == RESOLVED
    assert outbox("telegram", "4242")[-1] == lifecycle.CSAT_QUESTION

    second = handoff("5151")
    post(client, f"/console/tickets/{second}/reply", {"text": "已为您处理好"})
    assert post(client, f"/console/tickets/{second}/hand-back").status_code == 303
    ended = fetch(second)
    assert (ended.state, ended.close_reason) == (CLOSED, HANDED_BACK)
    assert outbox("telegram", "5151") == ["已为您处理好", lifecycle.HANDED_BACK_NOTICE]

    acted = {(e.ticket_id, e.action) for e in events() if e.actor_id == alice}
    assert {
        (ticket_id, "assigned"),
        (ticket_id, "reply"),
        (ticket_id, "note"),
        (ticket_id, "tags"),
        (ticket_id, "state"),
        (second, "state"),
    } <= acted, "every action is audited with the agent as actor"
    timeline = client.get(f"/console/tickets/{ticket_id}").text
    assert "客服回复" in timeline and "添加备注" in timeline
    missing = client.get("/console/tickets/999999")
    assert missing.status_code == 404 and "不存在" in missing.text


def test_text_typed_in_the_browser_is_stored_and_sent_with_plain_line_breaks(console):
    admin, _ = logged_in(console, "root", role="admin")
    client, _ = logged_in(console, "alice")
    ticket_id = handoff("4242")
    post(admin, "/console/admin/canned", {"title": "步骤", "body": "第一步\r\n第二步"})
    assert post(client, f"/console/tickets/{ticket_id}/reply", {"text": "您好\r\n请稍等\r马上"}).status_code == 303
    assert post(client, f"/console/tickets/{ticket_id}/note", {"text": "备注一\r\n备注二"}).status_code == 303
    assert outbox("telegram", "4242") == ["您好\n请稍等\n马上"]
    with session_scope() as db_session:
        assert [c.body for c in replies.list_canned(db_session=db_session)] == ["第一步\n第二步"]
        texts = [m.text for m in service.get_messages(db_session=db_session, ticket_id=ticket_id)]
        notes = [n.text for n in service.get_notes(db_session=db_session, ticket_id=ticket_id)]
    assert texts[-1] == "您好\n请稍等\n马上" and notes == ["备注一\n备注二"]


def test_a_ticket_no_agent_answered_cannot_be_handed_back_to_the_bot(console):
    client, _ = logged_in(console, "alice")
    ticket_id = handoff("4242")
    post(client, f"/console/tickets/{ticket_id}/take")
    refused = post(client, f"/console/tickets/{ticket_id}/hand-back", follow_redirects=True)
    assert "还没有客服回复过商户，不能转回智能助手" in " ".join(flashes(refused))
    assert fetch(ticket_id).state == ASSIGNED and outbox("telegram", "4242") == []
    post(client, f"/console/tickets/{ticket_id}/reply", {"text": "您好，问题已处理"})
    assert post(client, f"/console/tickets/{ticket_id}/hand-back").status_code == 303
    assert fetch(ticket_id).close_reason == HANDED_BACK
    resolved = handoff("5151")
    post(client, f"/console/tickets/{resolved}/take")
    post(client, f"/console/tickets/{resolved}/resolve")
    assert post(client, f"/console/tickets/{resolved}/hand-back").status_code == 303, "a resolved ticket may go back"
    assert fetch(resolved).close_reason == HANDED_BACK


def test_reply_is_refused_with_the_notice_once_the_wechat_window_closed(console):
    client, _ = logged_in(console, "alice")
    ticket_id = handoff("oWx1", channel="wechat", text="人工", now=utc() - timedelta(hours=49))
    page = client.get(f"/console/tickets/{ticket_id}")
    assert lifecycle.WINDOW_CLOSED_NOTICE in page.text
    assert re.search(r"<textarea name=\"text\"[^>]*disabled", page.text), "the reply box is disabled"
    refused = post(client, f"/console/tickets/{ticket_id}/reply", {"text": "还在吗"})
    assert refused.status_code == 409
    assert lifecycle.WINDOW_CLOSED_NOTICE in refused.text and "还在吗" in refused.text, "notice shown, draft kept"
    assert outbox("wechat", "oWx1") == []
    assert fetch(ticket_id).state == NEW


def test_a_reply_typed_at_capacity_is_not_lost(console):
    client, alice = logged_in(console, "alice", capacity=1)
    held, waiting = handoff("5001"), handoff("5002")
    assert post(client, f"/console/tickets/{held}/take").status_code == 303
    refused = post(client, f"/console/tickets/{waiting}/reply", {"text": "您好，发票已为您重开"})
    assert refused.status_code == 409
    assert "您好，发票已为您重开" in refused.text, "the draft stays in the reply box"
    assert "接单上限" in refused.text and "未发送" in refused.text, "a clear reason, in Chinese"
    assert outbox("telegram", "5002") == [] and fetch(waiting).assignee_id is None
    assert fetch(held).assignee_id == alice


def visible_text(html: str) -> str:
    """What a reader sees of a page: the text between tags, no markup or attributes."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.DOTALL)
    return re.sub(r"<[^>]+>", " ", body)


def test_ticket_queue_and_audit_pages_show_chinese_labels_not_internal_codes(console):
    client, _ = logged_in(console, "alice")
    admin, _ = logged_in(console, "root", role="admin")
    guide = {
        "guide": "busy_server",
        "step": "query",
        "path": [["busy_server", "where", "点了提交开票之后"], ["busy_server", "submitted", "没显示，不确定"]],
        "feedback": False,
        "paused": False,
        "idle": 0,
        "values": {},
    }
    ticket_id = handoff("7001", text="转人工", topic="busy_server", guide=guide)
    now = utc()
    with session_scope() as db_session:
        db_session.add(Incident(topic="busy_server", window_started_at=now, opened_at=now, affected_count=6))
    post(client, f"/console/tickets/{ticket_id}/take")
    assert post(client, f"/console/tickets/{ticket_id}/reply", {"text": "正在处理"}).status_code == 303
    assert post(client, f"/console/tickets/{ticket_id}/category", {"category": "buyer_info"}).status_code == 303

    page = client.get(f"/console/tickets/{ticket_id}")
    shown = visible_text(page.text)
    for raw in ("busy_server", "rule=", "outbox_message_id", "message_id", "buyer_info", "general", "'path'", "[["):
        assert raw not in shown, f"{raw!r} is shown to the agent"
    guide_title = "提示“服务器繁忙，请稍后再试”"
    assert "事件进行中：" in shown and f"「{guide_title}」" in shown, "the incident by its title"
    assert "第3步：查询结果是哪种情况？" in shown and "点了提交开票之后" in shown, "guide progress in words"
    assert "分类：一般咨询" in shown and "分类：购买方信息" in shown and "规则：默认" in shown
    assert "<tr><th>分类</th><td>购买方信息</td></tr>" in page.text, "the ticket's category by its label"

    queue = visible_text(client.get("/console/queue").text)
    assert "购买方信息" in queue and "buyer_info" not in queue and "busy_server" not in queue
    audit = visible_text(admin.get("/console/admin/audit").text)
    for raw in ("outbox_message_id", "rule=", "general", "busy_server", "staff_id"):
        assert raw not in audit, f"{raw!r} in the audit log"
    assert "处理人：alice" in audit


def test_the_assignee_column_never_wraps(console):
    client, _ = logged_in(console, "alice")
    ticket_id = handoff("7002")
    post(client, f"/console/tickets/{ticket_id}/take")
    queue = client.get("/console/queue").text
    assert re.search(r'<td class="assignee">alice</td>', queue) and '<th class="assignee">处理人</th>' in queue
    css = client.get("/console/static/console.css").text
    rule = re.search(r"\.table\.queue \.assignee \{([^}]*)\}", css)
    assert rule and "white-space: nowrap" in rule.group(1) and "min-width" in rule.group(1)


def test_agents_cannot_act_on_a_colleagues_ticket_but_admins_can(console):
    alice, alice_id = logged_in(console, "alice")
    bob, _ = logged_in(console, "bob")
    admin, _ = logged_in(console, "root", role="admin")
    ticket_id = handoff("4242")
    post(alice, f"/console/tickets/{ticket_id}/take")
    assert post(bob, f"/console/tickets/{ticket_id}/resolve").status_code == 403
    assert post(bob, f"/console/tickets/{ticket_id}/hand-back").status_code == 403
    taken = post(bob, f"/console/tickets/{ticket_id}/take", follow_redirects=True)
    assert "已由 alice 处理" in taken.text
    refused = post(bob, f"/console/tickets/{ticket_id}/reply", {"text": "我来"})
    assert refused.status_code == 400 and "已分配给其他客服" in refused.text
    assert fetch(ticket_id).assignee_id == alice_id
    assert post(admin, f"/console/tickets/{ticket_id}/priority", {"priority": "urgent"}).status_code == 303
    assert fetch(ticket_id).priority == "urgent"


def test_queue_filters_counts_presence_claim_and_transfer(console):
    client, alice = logged_in(console, "alice")
    _, bob = logged_in(console, "bob")
    first = handoff("1001", text="转人工 我要投诉")  # a complaint: urgent
    second = handoff("1002", text="转人工")
    page = client.get("/console/queue")
    assert "待分配 <b>2</b>" in page.text
    urgent = client.get("/console/queue", params={"priority": "urgent"}).text
    assert fetch(first).number in urgent and fetch(second).number not in urgent
    assert fetch(second).number in client.get("/console/queue", params={"q": fetch(second).number}).text

    assert post(client, "/console/presence", {"online": "1"}).status_code == 303
    with session_scope() as db_session:
        assert db_session.get(StaffUser, alice).online
    claimed = post(client, "/console/claim")
    assert claimed.status_code == 303 and claimed.headers["location"] == f"/console/tickets/{first}", "most urgent"
    mine = client.get("/console/queue", params={"mine": "1"}).text
    assert fetch(first).number in mine and fetch(second).number not in mine
    unassigned = client.get("/console/queue", params={"unassigned": "1"}).text
    assert fetch(second).number in unassigned and fetch(first).number not in unassigned

    moved = post(client, f"/console/tickets/{first}/transfer", {"to_agent_id": str(bob)})
    assert moved.status_code == 303 and fetch(first).assignee_id == bob
    post(client, "/console/claim")
    assert fetch(second).assignee_id == alice
    empty = post(client, "/console/claim", follow_redirects=True)
    assert "暂无待分配的工单" in empty.text

    assert post(client, f"/console/tickets/{second}/release").status_code == 303
    assert fetch(second).state == NEW


def test_canned_reply_fills_the_reply_box(console):
    admin, _ = logged_in(console, "root", role="admin")
    client, _ = logged_in(console, "alice")
    ticket_id = handoff("4242")
    created = post(
        admin, "/console/admin/canned", {"title": "问候", "body": "您好，工单 {ticket_number} 由 {agent_name} 处理"}
    )
    assert created.status_code == 303
    with session_scope() as db_session:
        (canned,) = replies.list_canned(db_session=db_session)
        canned_id = canned.id
    page = client.get(f"/console/tickets/{ticket_id}", params={"canned": canned_id})
    assert f"您好，工单 {fetch(ticket_id).number} 由 alice 处理</textarea>" in page.text


# --- admin pages ---------------------------------------------------------------------------------------------


def test_admin_manages_users_and_roles(console):
    admin, admin_id = logged_in(console, "root", role="admin")
    created = post(
        admin,
        "/console/admin/users",
        {"username": "Carol", "display_name": "小卡", "password": "long enough", "role": "agent", "capacity": "3"},
    )
    assert created.status_code == 303
    page = admin.get("/console/admin/users")
    assert "已创建账号 carol" in page.text and "小卡" in page.text
    with session_scope() as db_session:
        carol = staff.get_by_username(db_session=db_session, username="carol")
        carol_id = carol.id
    assert (carol.role, carol.capacity) == ("agent", 3)
    updated = post(
        admin, f"/console/admin/users/{carol_id}", {"display_name": "卡罗", "role": "admin", "capacity": "7"}
    )
    assert updated.status_code == 303
    with session_scope() as db_session:
        carol = db_session.get(StaffUser, carol_id)
        assert (carol.display_name, carol.role, carol.capacity) == ("卡罗", "admin", 7)
    short = post(admin, "/console/admin/users", {"username": "dave", "password": "short"}, follow_redirects=True)
    assert "密码长度" in short.text
    self_demote = post(admin, f"/console/admin/users/{admin_id}", {"role": "agent"}, follow_redirects=True)
    assert "不能取消自己的管理员权限" in self_demote.text
    self_disable = post(admin, f"/console/admin/users/{admin_id}/disable", follow_redirects=True)
    assert "不能停用自己的账号" in self_disable.text
    with session_scope() as db_session:
        assert db_session.get(StaffUser, admin_id).role == "admin" and db_session.get(StaffUser, admin_id).active
    actions = {e.action for e in events() if e.actor_id == admin_id}
    assert {"staff_created", "staff_display_name", "staff_role", "staff_capacity"} <= actions


def test_disabling_an_agent_returns_their_tickets_to_the_queue(console):
    admin, _ = logged_in(console, "root", role="admin")
    agent, agent_id = logged_in(console, "alice")
    ticket_id = handoff("4242")
    post(agent, f"/console/tickets/{ticket_id}/take")
    done = post(admin, f"/console/admin/users/{agent_id}/disable", follow_redirects=True)
    assert "1 张工单已退回队列" in done.text
    assert (fetch(ticket_id).state, fetch(ticket_id).assignee_id) == (NEW, None)


def audit_rows(client: TestClient, **params: str) -> str:
    """The audit table's body (the filter form lists every action too)."""
    page = client.get("/console/admin/audit", params=params)
    assert page.status_code == 200, page.text
    return page.text.split("<tbody>", 1)[1].split("</tbody>", 1)[0]


def test_audit_log_filters_by_actor_action_and_date(console):
    admin, _ = logged_in(console, "root", role="admin")
    agent, agent_id = logged_in(console, "alice")
    ticket_id = handoff("4242")
    post(agent, f"/console/tickets/{ticket_id}/note", {"text": "备注一"})
    post(admin, "/console/admin/canned", {"title": "模板", "body": "内容"})
    number = fetch(ticket_id).number
    everything = audit_rows(admin)
    assert "添加备注" in everything and "新建快捷回复" in everything and "登录控制台" in everything
    by_agent = audit_rows(admin, actor=str(agent_id))
    assert "添加备注" in by_agent and "新建快捷回复" not in by_agent
    notes = audit_rows(admin, action="note", ticket=number)
    assert number in notes and "新建快捷回复" not in notes and "登录控制台" not in notes
    system = audit_rows(admin, actor="system")
    assert "转人工" in system and "添加备注" not in system
    today = utc().astimezone(ZoneInfo("Asia/Shanghai")).date()
    day = timedelta(days=1)
    assert "添加备注" in audit_rows(admin, **{"from": today.isoformat()})
    assert "添加备注" not in audit_rows(admin, **{"from": (today + day).isoformat()})
    assert "添加备注" not in audit_rows(admin, to=(today - day).isoformat())
    assert "添加备注" in audit_rows(admin, to=today.isoformat())


def test_admin_edits_and_deletes_canned_replies(console):
    admin, _ = logged_in(console, "root", role="admin")
    post(admin, "/console/admin/canned", {"title": "问候", "body": "您好 {merchant_name}"})
    duplicate = post(admin, "/console/admin/canned", {"title": "问候", "body": "重复"}, follow_redirects=True)
    assert "已存在" in duplicate.text
    with session_scope() as db_session:
        (canned,) = replies.list_canned(db_session=db_session)
        canned_id = canned.id
    edit = admin.get(f"/console/admin/canned/{canned_id}")
    assert edit.status_code == 200 and "您好 {merchant_name}" in edit.text
    saved = post(
        admin, f"/console/admin/canned/{canned_id}", {"title": "问候语", "body": "您好 {nme}"}, follow_redirects=True
    )
    assert "{nme}" in saved.text and "不是可用变量" in saved.text
    with session_scope() as db_session:
        assert replies.get_canned(db_session=db_session, canned_id=canned_id).title == "问候语"
    assert post(admin, f"/console/admin/canned/{canned_id}/delete").status_code == 303
    assert "暂无快捷回复" in admin.get("/console/admin/canned").text
    assert admin.get(f"/console/admin/canned/{canned_id}").status_code == 404
