"""Sustained mixed WeChat traffic against `merchant-assist serve --workers 2` on PostgreSQL + Redis.

The mix, per push: 60 % shipped FAQ questions, 15 % vague questions (clarify), 15 % invoice lookups by bound
merchants (found and missing), 5 % handoffs (each from a new merchant, so each opens a ticket), 5 % greetings.
A bare FastAPI endpoint is measured in the same run for the ratio. Prints req/s, p50/p99, errors, tickets
opened, and each worker's resident memory after the run. Figures only; it asserts nothing.

    .venv/bin/python bench/load.py [--seconds 60] [--connections 16] [--workers 2]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--redis redis://127.0.0.1:6379/14]
"""

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import webhook

REPO = Path(__file__).resolve().parent.parent
SELLER = "91110108MA01ABCD5T"
BOUND = [f"oBound{i:04d}" for i in range(50)]
VAGUE = ["发票有问题", "开票的事情", "我那个票不对", "系统怎么回事", "税务那边的问题", "帮我看下发票"]
GREETINGS = ["你好", "在吗", "菜单", "您好，请问有人吗"]
FOUND = [f"2511200000{i:010d}" for i in range(200)]


class MixedRequests(webhook.Requests):
    """Pushes in the bench's traffic mix."""

    def message(self) -> tuple[str, str]:
        roll = random.random()
        if roll < 0.60:
            return f"oFaq{self.counter % 500:05d}", random.choice(self.questions)
        if roll < 0.75:
            return f"oVague{self.counter % 500:05d}", random.choice(VAGUE)
        if roll < 0.90:
            number = random.choice(FOUND) if random.random() < 0.8 else f"2511200000{random.randrange(10**10):010d}"
            return random.choice(BOUND), f"帮我查下发票 {number}"
        if roll < 0.95:
            return f"oHuman{self.counter:012d}", "转人工"
        return f"oHello{self.counter % 500:05d}", random.choice(GREETINGS)


def prepare(database_url: str, redis_url: str) -> None:
    """Migrate a fresh database, create one merchant with 50 bound WeChat identities and 200 invoices."""
    os.environ["DATABASE_URL"], os.environ["REDIS_URL"] = database_url, redis_url
    from bot.bootstrap import prepare_database
    from core.database import session_scope
    from core.store import RedisStore
    from invoices import service as invoices
    from invoices.backend import InvoiceRecord, InvoiceStatus
    from merchants import service as merchants

    RedisStore(redis_url)._redis.flushdb()
    prepare_database()
    with session_scope() as db_session:
        merchant = merchants.create(db_session=db_session, name="压测商户", tax_ids=[SELLER])
        codes = [
            merchants.issue_code(db_session=db_session, merchant_id=merchant.id, ttl_seconds=3600)[0] for _ in BOUND
        ]
    store = RedisStore(redis_url)
    for openid, code in zip(BOUND, codes, strict=True):
        with session_scope() as db_session:
            merchants.bind(
                db_session=db_session, store=store, channel="wechat", user_id=openid, tax_id=SELLER, code=code
            )
    statuses = list(InvoiceStatus)
    with session_scope() as db_session:
        invoices.upsert_many(
            db_session=db_session,
            records=[
                InvoiceRecord(number=n, status=statuses[i % len(statuses)], seller_tax_id=SELLER)
                for i, n in enumerate(FOUND)
            ],
        )


def worker_pids(parent: int) -> list[int]:
    """The worker processes under a uvicorn master."""
    children = Path(f"/proc/{parent}/task/{parent}/children")
    pids = [int(p) for p in children.read_text().split()] if children.exists() else []
    return [pid for pid in pids if "multiprocessing.resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_text()]


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def count_tickets() -> int:
    from sqlalchemy import func, select

    from core.database import session_scope
    from ticketing.models import Ticket

    with session_scope() as db_session:
        return db_session.scalar(select(func.count()).select_from(Ticket))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = parser.parse_args()

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"bench_load_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    (workdir / "bare_app.py").write_text(webhook.BARE_APP)
    metrics_dir = workdir / "metrics"
    metrics_dir.mkdir()
    server = bare = None
    try:
        prepare(database_url, args.redis)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "REDIS_URL": args.redis,
            "WECHAT_TOKEN": webhook.TOKEN,
            "WECHAT_APP_ID": webhook.APP_ID,
            "WECHAT_AES_KEY": webhook.AES_KEY,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": f"{REPO}:{workdir}",
        }
        bare_port, port = webhook.free_port(), webhook.free_port()
        bare = webhook.start_server("bare_app:app", bare_port, env, workdir)
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "merchant-assist"),
                "serve",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(port, server)
        bare_figures = asyncio.run(webhook.drive(bare_port, False, args.seconds, args.connections))
        figures = asyncio.run(webhook.drive(port, False, args.seconds, args.connections, requests=MixedRequests(False)))
        workers = worker_pids(server.pid)
        ratio = figures["rps"] / bare_figures["rps"]
        print(f"machine: {os.cpu_count()} cores; server and load generator share them")
        print(
            f"bare FastAPI (1 worker)   {bare_figures['rps']:8.0f} req/s  p50 {bare_figures['p50']:6.1f} ms  "
            f"p99 {bare_figures['p99']:6.1f} ms  errors {bare_figures['errors']}"
        )
        print(
            f"mixed WeChat ({args.workers} workers)  {figures['rps']:8.0f} req/s  p50 {figures['p50']:6.1f} ms  "
            f"p99 {figures['p99']:6.1f} ms  errors {figures['errors']}  ratio {ratio:.2f}"
        )
        os.environ["DATABASE_URL"] = database_url
        print(f"tickets opened: {count_tickets()}; requests: {figures['n']}")
        print("worker memory after the run: " + ", ".join(f"pid {pid} {rss_mb(pid):.0f} MiB" for pid in workers))
    finally:
        for process in (server, bare):
            if process is not None:
                process.terminate()
                process.wait(timeout=20)
        from core.database import get_engine

        get_engine.cache_clear()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def wait_for_port(port: int, process: subprocess.Popen) -> None:
    import socket

    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                time.sleep(2)  # let every worker finish its start-up (matcher build)
                return
        except OSError:
            if process.poll() is not None:
                raise SystemExit("server exited during start-up") from None
            time.sleep(0.3)
    raise SystemExit("server did not start")


if __name__ == "__main__":
    main()
