"""The live console over HTTP on each database: every ticket change is announced after commit (never on rollback),
the agents' event stream needs a login and carries notices (ids and kinds, no content), presence shows who else has
a ticket open or is typing, and the ticket page folds the bot conversation and embeds the filled quick replies."""

import json
import re
import threading
import time
from datetime import timedelta
from html import unescape

from console import live
from core import events
from core.clock import utc
from core.database import session_scope
from core.store import get_store
from tests.console.test_console import console, csrf_of, handoff, logged_in, post  # noqa: F401 (console is a fixture)
from tests.ticketing.test_ticketing import record_turn
from ticketing import assignment, labels, presence, sla, staff
from ticketing import handoff as ticket_handoff

MERCHANT_SAYS = "发票还是开不出来，麻烦快点"


def notices_since(seq: int) -> list[events.Event]:
    return events.read(get_store(), after=seq)[1]


def test_a_ticket_change_is_announced_once_per_transaction_after_commit_and_never_on_rollback(console):  # noqa: F811
    store = get_store()
    start = events.current(store)
    ticket_id = handoff("4242")
    created = notices_since(start)
    (ticket_notice,) = [n for n in created if n.kind == events.TICKET]
    assert ticket_notice.key == str(ticket_id)
    assert {"created", "handoff", "merchant_message"} <= set(ticket_notice.data["actions"])
    assert ticket_notice.data["state"] == "new" and ticket_notice.data["assignee_id"] is None
    assert [n.data["tickets"] for n in created if n.kind == events.QUEUE] == [[ticket_id]]
    assert "转人工" not in json.dumps([n.data for n in created], ensure_ascii=False), "notices carry no content"

    before_rollback = events.current(store)
    with session_scope() as db_session:
        labels.add_note(db_session=db_session, ticket_id=ticket_id, author_id=None, text="内部备注")
        db_session.rollback()
    assert events.current(store) == before_rollback, "a rolled-back change is never announced"

    with session_scope() as db_session:
        agent = staff.create(db_session=db_session, username="wangfang", password="correct horse battery")
        staff.set_online(db_session=db_session, staff_id=agent.id, online=True)
        agent_id = agent.id
    seq = events.current(store)
    with session_scope() as db_session:
        assignment.auto_assign(db_session=db_session)
    (assigned,) = [n for n in notices_since(seq) if n.kind == events.TICKET]
    assert (assigned.data["assignee_id"], assigned.data["state"]) == (agent_id, "assigned")
    assert "assigned" in assigned.data["actions"]

    seq = events.current(store)
    with session_scope() as db_session:
        ticket_handoff.append_merchant_message(db_session=db_session, ticket_id=ticket_id, text=MERCHANT_SAYS)
    (appended,) = [n for n in notices_since(seq) if n.kind == events.TICKET]
    assert appended.data["actions"] == ["merchant_message"] and appended.data["assignee_id"] == agent_id

    seq = events.current(store)
    with session_scope() as db_session:
        sla.check_sla(db_session=db_session, now=utc() + timedelta(days=30))
    (late,) = [n for n in notices_since(seq) if n.kind == events.TICKET]
    assert "sla_breach" in late.data["actions"] and late.data["assignee_id"] == agent_id


def read_ticket_notice(client, ticket_id: int, action, timeout: float = 10.0) -> tuple[dict, str]:
    """Open the event stream, run `action` once it is listening, and return the first notice about the ticket (and
    everything the stream sent until then)."""
    seen = []
    with client.stream("GET", "/console/events") as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        threading.Timer(0.5, action).start()
        deadline = time.monotonic() + timeout
        for line in stream.iter_lines():
            seen.append(line)
            if line.startswith("data: "):
                notice = json.loads(line.removeprefix("data: "))
                if notice["kind"] == events.TICKET and notice["key"] == str(ticket_id):
                    return notice, "\n".join(seen)
            assert time.monotonic() < deadline, "no notice about the ticket in time:\n" + "\n".join(seen)
    raise AssertionError("the stream ended")


def test_the_event_stream_needs_a_login_and_streams_a_notice_when_a_merchant_writes(console, monkeypatch):  # noqa: F811
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.2)
    anonymous = console.browser().get("/console/events")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/console/login")

    client, _ = logged_in(console, "alice")
    ticket_id = handoff("4242")

    def merchant_writes() -> None:
        events.publish(events.CHAT, "web:someone")  # the merchants' chat pages' notices are not for agents
        with session_scope() as db_session:
            ticket_handoff.append_merchant_message(db_session=db_session, ticket_id=ticket_id, text=MERCHANT_SAYS)

    notice, raw = read_ticket_notice(client, ticket_id, merchant_writes)
    assert "merchant_message" in notice["actions"]
    assert re.search(r"^id: \d+$", raw, re.M), "each notice carries its number, so a reconnect resumes after it"
    assert "event: ticket" in raw and MERCHANT_SAYS not in raw and "web:someone" not in raw


def visible(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", " ", html))


def test_presence_shows_who_else_views_or_types_and_never_oneself(console, monkeypatch):  # noqa: F811
    alice, _ = logged_in(console, "alice")
    bob, _ = logged_in(console, "bob")
    ticket_id = handoff("4242")
    path = f"/console/tickets/{ticket_id}/presence"
    assert alice.post(path, data={"typing": "0"}).status_code == 403, "the CSRF token is needed like every POST"

    seq = events.current(get_store())
    assert post(alice, path, {"typing": "0"}).status_code == 204
    assert [(n.kind, n.key) for n in notices_since(seq)] == [(events.PRESENCE, str(ticket_id))]
    assert "alice 正在查看" in visible(bob.get(f"/console/tickets/{ticket_id}").text)
    assert "正在查看" not in visible(alice.get(f"/console/tickets/{ticket_id}").text)
    queue_row = re.search(rf'href="/console/tickets/{ticket_id}".*?</tr>', bob.get("/console/queue").text, re.S)
    assert "alice 查看中" in visible(queue_row.group(0))
    assert "查看中" not in visible(alice.get("/console/queue").text)

    seq = events.current(get_store())
    assert post(alice, path, {"typing": "0"}).status_code == 204
    assert notices_since(seq) == [], "a page renewing its mark changes nothing others see"
    assert post(alice, path, {"typing": "1"}).status_code == 204
    assert "alice 正在输入…" in visible(bob.get(f"/console/tickets/{ticket_id}").text)

    now = time.time()
    monkeypatch.setattr(presence, "clock", lambda: now + presence.TYPING_SECONDS + 1)
    assert "alice 正在查看" in visible(bob.get(f"/console/tickets/{ticket_id}").text), "typing stops by itself"
    monkeypatch.setattr(presence, "clock", lambda: now + presence.VIEWING_SECONDS + 1)
    assert "正在查看" not in visible(bob.get(f"/console/tickets/{ticket_id}").text), "a closed page is gone in time"
    monkeypatch.setattr(presence, "clock", lambda: now)

    token = csrf_of(alice)
    assert alice.post(path, data={"leaving": "1", "csrf_token": token}).status_code == 204
    assert "正在查看" not in visible(bob.get(f"/console/tickets/{ticket_id}").text)
    assert alice.post("/console/tickets/999999/presence", data={"csrf_token": token}).status_code == 404


def test_ticket_page_folds_the_bot_conversation_and_embeds_the_filled_quick_replies(console):  # noqa: F811
    record_turn("4242", "开票提示失败", "麻烦把完整的报错提示发我")
    record_turn("4242", "报错代码 E1001", "好的，我再帮您看看")
    record_turn("4242", "还是不行", "好的，正在为您转接人工客服。")
    admin, _ = logged_in(console, "root", role="admin")
    body = "{merchant_name}您好，工单 {ticket_number} 由我处理"
    post(admin, "/console/admin/canned", {"title": "问候", "body": body})
    client, _ = logged_in(console, "alice")
    ticket_id = handoff("4242", text="转人工")
    with session_scope() as db_session:
        ticket_handoff.append_merchant_message(db_session=db_session, ticket_id=ticket_id, text=MERCHANT_SAYS)
    page = client.get(f"/console/tickets/{ticket_id}").text

    folded = re.search(r'<details class="bot-turns">(.*?)</details>', page, re.S)
    assert folded and "机器人对话（4 条）" in folded.group(1)
    assert "开票提示失败" in folded.group(1) and "还是不行" not in folded.group(1)
    after = page[folded.end() :]
    order = [after.index(text) for text in ("还是不行", "转人工", MERCHANT_SAYS, 'id="reply-form"')]
    assert order == sorted(order), "oldest to newest, the newest right above the reply box"

    embedded = re.search(r'<script type="application/json" id="canned-data">(.*?)</script>', page, re.S)
    (quick,) = json.loads(embedded.group(1))
    assert quick["title"] == "问候" and quick["text"] == f"您好，工单 T{ticket_id:06d} 由我处理"
    assert 'src="/console/static/live.js"' in page and f'name="console-ticket" content="{ticket_id}"' in page


def test_the_live_script_is_served_and_loads_nothing_from_elsewhere(console):  # noqa: F811
    script = console.client.get("/console/static/live.js")
    assert script.status_code == 200 and "EventSource" in script.text and "http" not in script.text.split("*/", 1)[1]


def test_a_background_refresh_leaves_the_confirmation_to_the_page_the_agent_lands_on(console):  # noqa: F811
    """live.js re-fetches a page when a notice comes, possibly while the agent's own reply redirects: that fetch must
    not take the "回复已发送" the agent is about to see."""
    client, _ = logged_in(console, "alice")
    ticket_id = handoff("4343")
    assert post(client, f"/console/tickets/{ticket_id}/take").status_code == 303
    client.get(f"/console/tickets/{ticket_id}")  # the take's own confirmation, shown
    sent = post(client, f"/console/tickets/{ticket_id}/reply", {"text": "您好，正在为您查询"}, follow_redirects=False)
    assert sent.status_code == 303
    background = client.get(f"/console/tickets/{ticket_id}", headers={"X-Live-Refresh": "1"}).text
    assert "回复已发送" not in background
    assert "回复已发送" in client.get(f"/console/tickets/{ticket_id}").text
