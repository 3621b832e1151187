"""Live console latency: `merchant-assist serve --workers 2` on PostgreSQL + Redis, 200 open /console/events streams
of a logged-in agent, then merchant replies to open tickets through the chat API; measures the time from sending
each reply until its ticket notice reaches each listening stream. Prints p50/p95/max and the connection count.
Figures only; it asserts nothing (the target is p95 ≤ 1 s).

    .venv/bin/python bench/live.py [--connections 200] [--replies 50] [--workers 2]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test] [--redis redis://127.0.0.1:6379/13]

PostgreSQL and Redis default to the test suite's (TEST_POSTGRES_URL / TEST_REDIS_URL, Redis database 13); the
script says so and stops when either is unreachable.
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import webhook
from load import wait_for_port

REPO = Path(__file__).resolve().parent.parent
USERNAME, PASSWORD = "bench-agent", "bench live password"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def default_urls() -> tuple[str, str]:
    """The test suite's PostgreSQL and Redis (Redis database 13, apart from the tests')."""
    from sqlalchemy.engine import make_url

    from tests.conftest import POSTGRES_URL, REDIS_URL

    redis = REDIS_URL.rsplit("/", 1)[0] + "/13" if re.search(r"/\d+$", REDIS_URL) else REDIS_URL.rstrip("/") + "/13"
    return make_url(POSTGRES_URL).render_as_string(hide_password=False), redis


def reachable(postgres: str, redis: str) -> str | None:
    """Why the services cannot be used, or None."""
    from sqlalchemy import create_engine, text

    from core.store import RedisStore

    try:
        with create_engine(postgres).connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not reachable", said in words
        return f"PostgreSQL at {postgres} unreachable: {exc}"
    try:
        RedisStore(redis).ping()
    except Exception as exc:
        return f"Redis at {redis} unreachable: {exc}"
    return None


def prepare(database_url: str, redis_url: str) -> str:
    """Migrate a fresh database, create the agent account and an integration; return the integration's API key."""
    os.environ["DATABASE_URL"], os.environ["REDIS_URL"] = database_url, redis_url
    from bot.bootstrap import prepare_database
    from core.database import session_scope
    from integrations import service as integrations
    from ticketing import staff

    prepare_database()
    with session_scope() as db_session:
        staff.create(db_session=db_session, username=USERNAME, password=PASSWORD, display_name="压测客服")
        return integrations.create(db_session=db_session, slug="bench", name="压测接入", allow_binding=False).api_key


async def login(client: httpx.AsyncClient) -> None:
    page = await client.get("/console/login")
    token = CSRF.search(page.text).group(1)
    done = await client.post(
        "/console/login", data={"username": USERNAME, "password": PASSWORD, "csrf_token": token, "next": ""}
    )
    if done.status_code != 303:
        raise SystemExit(f"login failed: {done.status_code} {done.text[:200]}")


class Listener:
    """One open event stream: when each ticket notice arrived."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.arrived: dict[str, float] = {}
        self.resyncs = 0
        self.failure = ""

    async def run(self, port: int, cookie: str) -> None:
        """A bare HTTP/1.1 client (asyncio streams, chunked body): 200 of them stay light in one process."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = f"GET /console/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
        writer.write((request + "Accept: text/event-stream\r\n\r\n").encode())
        try:
            status = await reader.readline()
            if b" 200 " not in status:
                self.failure = status.decode(errors="replace").strip() or "connection closed"
                return
            while (await reader.readline()).strip():
                pass  # headers
            while True:
                size = int((await reader.readline()).strip() or b"0", 16)
                if size == 0:
                    return
                chunk = (await reader.readexactly(size + 2)).decode()
                arrived = time.perf_counter()
                for line in chunk.splitlines():
                    if line.startswith(("retry:", ":")):
                        self.connected.set()
                    elif line.startswith("data: "):
                        notice = json.loads(line[6:])
                        self.resyncs += notice["kind"] == "resync"
                        if notice["kind"] == "ticket" and "merchant_message" in notice.get("actions", ()):
                            self.arrived.setdefault(notice["key"], arrived)
        finally:
            writer.close()


async def chat(client: httpx.AsyncClient, key: str, user_id: str, text: str) -> None:
    sent = await client.post(
        "/api/chat", json={"user_id": user_id, "text": text}, headers={"Authorization": f"Bearer {key}"}
    )
    sent.raise_for_status()


def ticket_ids(user_ids: list[str]) -> dict[str, str]:
    """The ticket of each merchant, by user id."""
    from sqlalchemy import select

    from core.database import session_scope
    from ticketing.models import Ticket

    with session_scope() as db_session:
        rows = db_session.execute(select(Ticket.user_id, Ticket.id).where(Ticket.channel == "api")).all()
    by_user = {user_id: str(ticket_id) for user_id, ticket_id in rows}
    return {user_id: by_user[f"bench:{user_id}"] for user_id in user_ids}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


async def drive(port: int, key: str, connections: int, replies: int) -> None:
    base = f"http://127.0.0.1:{port}"
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as console,
        httpx.AsyncClient(base_url=base, timeout=60) as api,
    ):
        await login(console)
        merchants = [f"m{n:04d}" for n in range(replies)]
        for user_id in merchants:  # each opens a ticket, before anyone listens
            await chat(api, key, user_id, "转人工，发票开具失败")
        tickets = ticket_ids(merchants)

        listeners = [Listener() for _ in range(connections)]
        cookie = "; ".join(f"{name}={value}" for name, value in console.cookies.items())
        tasks = [asyncio.create_task(listener.run(port, cookie)) for listener in listeners]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(lst.connected.wait() for lst in listeners)), timeout=60)
        connected = sum(listener.connected.is_set() for listener in listeners)
        failures = Counter(listener.failure for listener in listeners if listener.failure)
        failures.update(repr(task.exception()) for task in tasks if task.done() and task.exception())
        if failures:
            print("connections refused or failed:", dict(failures))
        await asyncio.sleep(1)

        sent_at: dict[str, float] = {}
        answered: list[float] = []
        for user_id in merchants:
            ticket = tickets[user_id]
            sent_at[ticket] = time.perf_counter()
            await chat(api, key, user_id, "开票时提示税号不正确，麻烦看一下")
            answered.append(time.perf_counter() - sent_at[ticket])
            await asyncio.sleep(0.1)
        await asyncio.sleep(3)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    api_ms = [value * 1000 for value in answered]
    latencies, missed, slowest_per_reply = [], 0, []
    for ticket, start in sent_at.items():
        per_reply = []
        for listener in listeners:
            if not listener.connected.is_set():
                continue
            if ticket in listener.arrived:
                per_reply.append(listener.arrived[ticket] - start)
            else:
                missed += 1
        latencies += per_reply
        if per_reply:
            slowest_per_reply.append(max(per_reply))
    print(f"machine: {os.cpu_count()} cores; server, PostgreSQL, Redis and the listeners share them")
    print(f"open /console/events connections: {connected} of {connections}")
    resyncs = sum(listener.resyncs for listener in listeners)
    print(f"merchant replies sent: {len(sent_at)}; notices delivered: {len(latencies)}; missed: {missed}")
    print(f"resync notices (a page reloads its data instead): {resyncs}")
    print(f"chat API answer to each reply: p50 {percentile(api_ms, 0.5):.0f} ms  p95 {percentile(api_ms, 0.95):.0f} ms")
    if latencies:
        ms = [value * 1000 for value in latencies]
        print(
            f"send → notice on a listening page: p50 {percentile(ms, 0.5):.0f} ms  p95 {percentile(ms, 0.95):.0f} ms  "
            f"max {max(ms):.0f} ms  (mean {statistics.mean(ms):.0f} ms)"
        )
        slow = [value * 1000 for value in slowest_per_reply]
        last = f"p50 {percentile(slow, 0.5):.0f} ms  max {max(slow):.0f} ms"
        print(f"until the last of the {connected} pages had it: {last}")


def main() -> None:
    postgres_default, redis_default = default_urls()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--replies", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--postgres", default=postgres_default)
    parser.add_argument("--redis", default=redis_default)
    args = parser.parse_args()
    why = reachable(args.postgres, args.redis)
    if why:
        raise SystemExit(f"{why}\nThis bench needs PostgreSQL and Redis (several workers share notices through Redis).")

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"bench_live_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
    server = None
    try:
        key = prepare(database_url, args.redis)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": args.redis,
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(REPO),
        }
        log = open(Path(tempfile.gettempdir()) / f"{name}.log", "w")  # noqa: SIM115 - open while the server runs
        print(f"server log: {log.name}")
        port = webhook.free_port()
        command = [str(Path(sys.executable).parent / "merchant-assist"), "serve", "--port", str(port)]
        server = subprocess.Popen(
            [*command, "--workers", str(args.workers)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        wait_for_port(port, server)
        print(f"{args.workers} uvicorn workers on PostgreSQL ({name}) and Redis ({args.redis})")
        asyncio.run(drive(port, key, args.connections, args.replies))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        from core.database import get_engine

        get_engine.cache_clear()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
