"""Latency of normal chat traffic while hostile senders post long messages the lexical stage cannot settle.

Starts `merchant-assist serve` (SQLite and one worker by default; --postgres: a scratch PostgreSQL database, Redis
and two workers) with the embedding re-ranker on, then measures the median /api/chat latency of one client asking
the shipped FAQ questions one after another: first quietly, then while eight clients keep sending 2,000-character
vague messages (each different, so nothing is cached), one a second each (--pause 0: back to back). Prints quiet
p50, loaded p50 and their ratio (target ≤ 2×). --control: the same clients send FAQ questions instead, the ratio that
the load alone gives (compare with --pause 0).
--code runs another checkout's server (e.g. /work/main, to compare with the code before bounded matching).

    .venv/bin/python bench/hostile.py [--seconds 20] [--hostile 8] [--pause 1] [--code /work/main]
        [--postgres [postgresql+psycopg://postgres@127.0.0.1:5432/postgres]] [--redis redis://127.0.0.1:6379/13]

The chat API may need a key: the server gets CHAT_API_DEMO=1 (anonymous loopback calls in demo mode) and, when
CHAT_API_KEY is set here, every request carries "Authorization: Bearer $CHAT_API_KEY" (see `send`).
It prints figures only; it asserts nothing.
"""

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOSTILE_CHARS = 2000
# Vague clauses with invoice words and no answerable question: the lexical stage stays unsure, the re-ranker runs.
VAGUE = [
    "票的事情还是不对",
    "系统那边好像有点问题",
    "发票这个东西我也搞不太懂",
    "税务那边说让我们自己想办法",
    "开票的时候总觉得哪里怪怪的",
    "会计说可能是设置的问题",
    "上次也是这样后来又好了",
    "我们这边的电脑是新买的",
    "老板让我问问你们",
    "反正就是不太正常",
    "数据好像对不上",
    "那个页面一直在转",
]
INTERJECTIONS = ["", "啊", "呢", "吧", "哎", "嗯", "呀", "哦"]


def hostile_text(rng: random.Random) -> str:
    """A 2,000-character vague story, different every time."""
    parts: list[str] = []
    size = 0
    while size < HOSTILE_CHARS:
        part = rng.choice(VAGUE) + rng.choice(INTERJECTIONS) + rng.choice("，。；")  # no digits: not an invoice number
        parts.append(part)
        size += len(part)
    return "".join(parts)[:HOSTILE_CHARS]


async def send(client: httpx.AsyncClient, user_id: str, text: str) -> tuple[int, float]:
    """POST one message to /api/chat; return the status and the seconds it took (the one place requests are made)."""
    headers = {}
    if os.environ.get("CHAT_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['CHAT_API_KEY']}"
    started = time.perf_counter()
    response = await client.post("/api/chat", json={"user_id": user_id, "text": text}, headers=headers)
    return response.status_code, time.perf_counter() - started


async def normal_traffic(client: httpx.AsyncClient, questions: list[str], seconds: float, tag: str) -> dict:
    """One client asking FAQ questions back to back for `seconds`; latencies of the successful ones."""
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        status, took = await send(client, f"normal-{tag}-{n % 50}", questions[n % len(questions)])
        n += 1
        if status == 200:
            latencies.append(took)
        else:
            errors += 1
    return {"n": len(latencies), "errors": errors, "p50": statistics.median(latencies) if latencies else float("nan")}


async def hostile_sender(
    client: httpx.AsyncClient, index: int, stop: asyncio.Event, counts: dict, pause: float, control: list[str]
) -> None:
    """Send long messages (each from a new identity, as a per-identity limit would not stop them), `pause` s apart;
    with `control` questions, send those instead (the same load made of normal messages)."""
    rng = random.Random(index)
    n = 0
    while not stop.is_set():
        text = control[(index * 7 + n) % len(control)] if control else hostile_text(rng)
        try:
            status, took = await send(client, f"hostile-{index}-{n}", text)
            counts["ok" if status == 200 else "errors"] += 1
            counts["seconds"].append(took)
        except httpx.HTTPError:
            counts["errors"] += 1
        n += 1
        if pause:
            await asyncio.sleep(pause)


async def measure(
    base_url: str, questions: list[str], seconds: float, hostile: int, pause: float, control: bool
) -> tuple[dict, dict, dict]:
    limits = httpx.Limits(max_connections=hostile + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=300, limits=limits) as client:
        await normal_traffic(client, questions, 3, "warm")
        quiet = await normal_traffic(client, questions, seconds, "quiet")
        stop = asyncio.Event()
        counts: dict = {"ok": 0, "errors": 0, "seconds": []}
        senders = [
            asyncio.create_task(hostile_sender(client, i, stop, counts, pause, questions if control else []))
            for i in range(hostile)
        ]
        await asyncio.sleep(2)  # let the hostile load build up
        loaded = await normal_traffic(client, questions, seconds, "loaded")
        stop.set()
        await asyncio.wait(senders, timeout=120)
        for task in senders:
            task.cancel()
    return quiet, loaded, counts


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(base_url: str, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                time.sleep(2)  # every worker finishes its start-up (the matcher build)
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not start")


def shipped_questions(code: Path) -> list[str]:
    sys.path.insert(0, str(code))
    from knowledge import service

    return [entry.question for entry in service.default_entries()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase")
    parser.add_argument("--hostile", type=int, default=8, help="hostile clients")
    parser.add_argument(
        "--pause", type=float, default=1.0, help="seconds each hostile client waits between messages (0: flood)"
    )
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose server is measured")
    parser.add_argument("--postgres", nargs="?", const="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--lexical", action="store_true", help="without the embedding re-ranker (the flood alone)")
    parser.add_argument("--workers", type=int, default=None, help="default: 1 on SQLite, 2 on PostgreSQL")
    parser.add_argument(
        "--control",
        action="store_true",
        help="the other clients send FAQ questions instead (the load without hostility)",
    )
    args = parser.parse_args()
    code = args.code.resolve()
    workdir = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env |= {
        "PYTHONPATH": str(code),
        "CHAT_API_DEMO": "1",
        "MATCHER_EMBEDDINGS": "false" if args.lexical else "true",
        "INBOUND_MESSAGES_PER_MINUTE": "0",  # the per-identity limit is not what is measured here
        "LOG_LEVEL": "WARNING",
        "ADMIN_TOKEN": env.get("ADMIN_TOKEN", uuid.uuid4().hex),
    }
    admin = database = None
    workers = args.workers or (2 if args.postgres else 1)
    if args.postgres:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        database = f"bench_hostile_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{database}"'))
        env["DATABASE_URL"] = make_url(args.postgres).set(database=database).render_as_string(hide_password=False)
        env["REDIS_URL"] = args.redis
    else:
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'hostile.db'}"
        env.pop("REDIS_URL", None)
    port = free_port()
    command = [str(BIN / "merchant-assist"), "serve", "--port", str(port), "--workers", str(workers)]
    log = (workdir / "server.log").open("wb")
    server = subprocess.Popen(command, cwd=code, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base_url = f"http://127.0.0.1:{port}"
        wait_ready(base_url, server)
        questions = shipped_questions(code)
        quiet, loaded, counts = asyncio.run(
            measure(base_url, questions, args.seconds, args.hostile, args.pause, args.control)
        )
        hostile_p50 = statistics.median(counts["seconds"]) * 1000 if counts["seconds"] else float("nan")
        kind = "PostgreSQL + Redis" if args.postgres else "SQLite"
        matcher = "lexical only" if args.lexical else "with the re-ranker"
        print(f"code: {code}  storage: {kind}  workers: {workers}  matcher: {matcher}  machine: {os.cpu_count()} cores")
        print(f"quiet : p50 {quiet['p50'] * 1000:7.1f} ms  ({quiet['n']} FAQ questions, {quiet['errors']} errors)")
        print(
            f"loaded: p50 {loaded['p50'] * 1000:7.1f} ms  ({loaded['n']} FAQ questions, {loaded['errors']} errors; "
            f"{args.hostile} {'control' if args.control else 'hostile'} clients, {args.pause:g} s apart, sent "
            f"{counts['ok']} {'FAQ questions' if args.control else f'messages of {HOSTILE_CHARS} characters'}, "
            f"p50 {hostile_p50:.0f} ms, {counts['errors']} errors)"
        )
        print(f"ratio loaded/quiet: {loaded['p50'] / quiet['p50']:.2f}  (target <= 2)")
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()
        if admin is not None:
            from sqlalchemy import text

            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
