"""The terminal chat's inbox, on each database: an agent's reply to a terminal user is printed once, as it arrives,
and delivered; reopening the chat shows what came while it was closed, not what was already seen."""

import time

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from bot import terminal
from bot.bootstrap import prepare_database
from core.database import session_scope
from core.messages import IncomingMessage
from core.outbox import service as outbox
from core.store import MemoryStore
from handlers.router import make_router
from ticketing import lifecycle, replies, staff
from ticketing.models import Ticket


@pytest.fixture
def handed_over(app_env, monkeypatch):
    """A terminal user "t1" who asked for a person, and an agent: (ticket id, agent id)."""
    monkeypatch.setenv("MATCHER_EMBEDDINGS", "false")
    monkeypatch.setattr(staff, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    prepare_database()
    router = make_router(store=MemoryStore())
    with session_scope() as db_session:
        reply = router.handle(IncomingMessage(channel="terminal", user_id="t1", text="转人工"), db_session=db_session)
        assert reply.intent == "handoff"
    with session_scope() as db_session:
        agent_id = staff.create(db_session=db_session, username="alice", password="correct horse").id
        ticket_id = db_session.scalars(select(Ticket.id)).one()
    return ticket_id, agent_id


def send(ticket_id: int, agent_id: int, text: str) -> None:
    with session_scope() as db_session:
        replies.send(db_session=db_session, ticket_id=ticket_id, agent_id=agent_id, text=text)


def test_an_agents_reply_is_printed_once_as_it_arrives_and_delivered(handed_over):
    ticket_id, agent_id = handed_over
    printed: list[str] = []
    inbox = terminal.TerminalInbox("t1", write=printed.append, poll_seconds=0.05).start()
    try:
        send(ticket_id, agent_id, "您好，我是客服小王\n请问发票号码是多少？")
        deadline = time.monotonic() + 5
        while not printed and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        inbox.stop()
    assert printed == ["[客服] 您好，我是客服小王\n       请问发票号码是多少？"]
    with session_scope() as db_session:
        [message] = outbox.pull(db_session=db_session, channel="terminal", recipient="t1")
        assert message.status == "sent"


def test_reopening_the_chat_shows_only_what_came_while_it_was_closed(handed_over):
    ticket_id, agent_id = handed_over
    send(ticket_id, agent_id, "第一条")
    first: list[str] = []
    assert terminal.TerminalInbox("t1", write=first.append).poll_once() == ["[客服] 第一条"]
    send(ticket_id, agent_id, "您不在时发的")
    with session_scope() as db_session:
        lifecycle.resolve(db_session=db_session, ticket_id=ticket_id, actor_id=agent_id)
    again: list[str] = []
    reopened = terminal.TerminalInbox("t1", write=again.append)
    rating = "[客服] " + lifecycle.CSAT_QUESTION.replace("\n", "\n       ")
    assert reopened.poll_once() == ["[客服] 您不在时发的", rating]
    assert reopened.poll_once() == [] and len(again) == 2, "each message is printed once"
    assert terminal.TerminalInbox("t2", write=again.append).poll_once() == [], "another user sees nothing"
