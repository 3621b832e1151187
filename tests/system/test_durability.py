"""Durability of acknowledgements: whatever POST /api/chat answered with a 200 survives a kill -9 that comes the moment
the 200 is read — the turn is stored, the ticket whose number the merchant was told exists under that number (and
no number is told twice), the binding the bot confirmed is there.

A real `merchant-assist serve` (tests/system/procs.py) on SQLite with the in-process store, and on PostgreSQL with a
redis-server of its own; it is killed after every acknowledged message and started again on the same database.
"""

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from core.database import make_engine
from core.identifiers import check_taxpayer_id, uscc_check_char
from knowledge.service import default_entries
from merchants import service as merchant_service
from tests.system.procs import Server, api_headers, scratch_database, server_env, start_redis

pytestmark = [pytest.mark.faults, pytest.mark.services]

TICKET_NUMBER = re.compile(r"T\d{6}")
HANDOFFS = 4  # handoffs by different merchants, each acknowledged and then killed
BINDINGS = 2


SLUG = "durable"  # the integration the suite calls as; its users are stored as "durable:<user_id>"


def chat(base_url: str, headers: dict[str, str], user_id: str, message: str) -> dict:
    """The one /api/chat call of this suite, with the integration's key: the reply's JSON on a 200."""
    response = httpx.post(
        f"{base_url}/api/chat", json={"user_id": user_id, "text": message}, headers=headers, timeout=60
    )
    assert response.status_code == 200, response.text
    return response.json()


def tax_id(n: int) -> str:
    """A valid 统一社会信用代码 (both check characters right), different for each `n`."""
    for org_check in "0123456789X":
        body = f"91110108MA01AB{n:02d}{org_check}"
        candidate = body + uscc_check_char(body)
        if not check_taxpayer_id(candidate).warnings:
            return candidate
    raise AssertionError(f"no valid taxpayer id for {n}")


@dataclass
class Backend:
    """The server's environment and an engine for the test's own look-ups in the same database."""

    env: dict[str, str]
    engine: Engine

    def scalar(self, sql: str, **params):
        with self.engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()


@contextlib.contextmanager
def backend(kind: str, workdir: Path) -> Iterator[Backend]:
    """SQLite + in-process store, or a scratch PostgreSQL database + a private redis-server."""
    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'durability.db'}"
        engine = make_engine(url)
        try:
            yield Backend(server_env(DATABASE_URL=url), engine)
        finally:
            engine.dispose()
        return
    redis_server = start_redis(workdir)
    try:
        with scratch_database() as database:
            yield Backend(server_env(DATABASE_URL=database.url, REDIS_URL=redis_server.url), database.engine)
    finally:
        redis_server.stop()


def seed_merchants(engine: Engine, count: int) -> list[tuple[str, str, str]]:
    """`count` merchants, each with a fresh binding code: (name, taxpayer id, code); committed by the test itself."""
    seeded = []
    with Session(engine, expire_on_commit=False) as db_session:
        for n in range(count):
            name = f"持久公司{n}"
            merchant = merchant_service.create(db_session=db_session, name=name, tax_ids=[tax_id(n)])
            code, _ = merchant_service.issue_code(db_session=db_session, merchant_id=merchant.id, ttl_seconds=3600)
            seeded.append((name, tax_id(n), code))
        db_session.commit()
    return seeded


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"])  # named like the conftest axis: --embedded drops PG
def test_what_a_200_acknowledged_survives_kill_9_right_after_it(tmp_path, database_url):
    faq_question = default_entries()[0].question
    with backend(database_url, tmp_path) as db:
        server = Server(db.env, log_path=tmp_path / "serve.log")
        try:
            server.start()  # migrates the database
            merchants = seed_merchants(db.engine, BINDINGS)
            headers = api_headers(server.base_url, slug=SLUG)
            steps = [("handoff", f"h{n}", "转人工") for n in range(HANDOFFS)]
            steps.insert(1, ("faq", "f0", faq_question))
            steps += [("binding", f"b{n}", f"绑定 {tax} {code}") for n, (_name, tax, code) in enumerate(merchants)]

            told: dict[str, str] = {}  # ticket number -> the merchant (user id) it was told to
            lost: list[str] = []
            for kind, user_id, message in steps:
                reply = chat(server.base_url, headers, user_id, message)
                server.kill()  # the moment the 200 is read
                server.start()  # restarted on the same database: the acknowledged effect must be there

                turns = db.scalar(
                    "SELECT count(*) FROM conversation_turn WHERE channel = 'api' AND user_id = :u AND text = :t",
                    u=f"{SLUG}:{user_id}",
                    t=message,
                )
                if turns != 1:
                    lost.append(f"{kind} {user_id}: {turns} stored turns for the acknowledged message")
                if kind == "handoff":
                    numbers = TICKET_NUMBER.findall(reply["text"])
                    assert numbers, f"the handoff reply names no ticket: {reply['text']!r}"
                    number = numbers[0]
                    owner = db.scalar("SELECT user_id FROM ticket WHERE id = :id", id=int(number[1:]))
                    if owner != f"{SLUG}:{user_id}":
                        lost.append(f"handoff {user_id}: ticket {number} told, the database has it for {owner!r}")
                    if number in told:
                        lost.append(f"handoff {user_id}: ticket {number} was already told to {told[number]}")
                    told.setdefault(number, user_id)
                if kind == "binding":
                    assert "绑定成功" in reply["text"], reply["text"]
                    bound = db.scalar(
                        "SELECT m.name FROM chat_binding b JOIN merchant m ON m.id = b.merchant_id "
                        "WHERE b.channel = 'api' AND b.user_id = :u",
                        u=f"{SLUG}:{user_id}",
                    )
                    expected = merchants[int(user_id[1:])][0]
                    if bound != expected:
                        lost.append(f"binding {user_id}: confirmed for {expected}, the database has {bound!r}")
        finally:
            server.stop()
    assert not lost, f"{len(lost)} acknowledged effects lost over {len(steps)} kill -9 cycles:\n" + "\n".join(lost)
    assert len(told) == HANDOFFS, f"ticket numbers told: {told}"
