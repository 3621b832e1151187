"""Throughput of the WeChat webhook against a bare FastAPI endpoint, in the same run on the same machine.

Starts two servers with one uvicorn worker each — the full app (plain or AES mode, answering FAQ questions
through the whole pipeline) and a bare FastAPI app whose POST returns "success" — and drives each with the same
keep-alive HTTP/1.1 load generator (asyncio streams, N connections, fixed duration). Prints req/s, the ratio,
p50/p99 latency and errors. Figures only; it asserts nothing.

    .venv/bin/python bench/webhook.py [--seconds 20] [--connections 16] [--mode plain|aes|both]
"""

import argparse
import asyncio
import hashlib
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
TOKEN = "benchtoken"
APP_ID = "wxbench0000000001"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def faq_questions() -> list[str]:
    """The shipped FAQ's questions: messages the bot answers from the FAQ."""
    from knowledge.service import default_entries

    return [entry.question for entry in default_entries()]


CPUS = sorted(os.sched_getaffinity(0))
# Server and load generator on separate cores, so neither steals the other's CPU.
SERVER_CPU, CLIENT_CPU = (CPUS[0], CPUS[1]) if len(CPUS) > 1 else (None, None)
BARE_APP = """
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
app = FastAPI()
@app.post("/wechat")
async def wechat(request: Request):
    await request.body()
    return PlainTextResponse("success")
"""


def _pin(cpu: int | None):
    """A preexec function that pins the child to one CPU (when the machine has more than one)."""
    return (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(app: str, port: int, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    """Run one uvicorn worker and wait until it accepts connections."""
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    if app.endswith("create_app"):
        command.append("--factory")
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_pin(SERVER_CPU)
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"server {app} exited: {process.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server {app} did not start")


class Requests:
    """Builds WeChat pushes exactly as Tencent does: signed query string, fresh MsgId each time."""

    def __init__(self, aes: bool) -> None:
        self.aes = aes
        self.questions = faq_questions()
        self.counter = random.randrange(10**15, 10**16)
        if aes:
            from wechatpy.crypto import WeChatCrypto

            self.crypto = WeChatCrypto(TOKEN, AES_KEY, APP_ID)

    def message(self) -> tuple[str, str]:
        """The sender and text of the next push: a shipped FAQ question from one of 500 merchants."""
        return f"oBench{self.counter % 500:05d}", random.choice(self.questions)

    def next(self) -> tuple[str, bytes]:
        self.counter += 1
        timestamp, nonce = str(int(time.time())), str(random.randrange(10**9))
        openid, content = self.message()
        xml = (
            f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{self.counter}</MsgId></xml>"
        )
        signature = hashlib.sha1("".join(sorted([TOKEN, timestamp, nonce])).encode()).hexdigest()
        params = {"signature": signature, "timestamp": timestamp, "nonce": nonce, "openid": openid}
        if self.aes:
            import xmltodict

            encrypted = xmltodict.parse(self.crypto.encrypt_message(xml, nonce, timestamp))["xml"]
            params |= {"encrypt_type": "aes", "msg_signature": encrypted["MsgSignature"]}
            cipher = encrypted["Encrypt"]
            xml = f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><Encrypt><![CDATA[{cipher}]]></Encrypt></xml>"
        return "/wechat?" + urlencode(params), xml.encode()


async def connection(port: int, requests: Requests, stop_at: float, latencies: list[float], errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            path, body = requests.next()
            head = (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            started = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not status_line.startswith(b"HTTP/1.1 200"):
                errors.append(status_line.decode().strip())
    finally:
        writer.close()


async def drive(
    port: int, aes: bool, seconds: float, connections: int, requests: Requests | None = None
) -> dict[str, float]:
    """Load one server; return throughput and latency figures."""
    requests = requests or Requests(aes)
    latencies: list[float] = []
    errors: list[str] = []
    warm_until = time.perf_counter() + 2
    await asyncio.gather(*(connection(port, requests, warm_until, [], []) for _ in range(connections)))
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(connection(port, requests, stop_at, latencies, errors) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "errors": len(errors),
        "n": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--mode", choices=("plain", "aes", "both"), default="both")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--redis-url", help="default: the in-process store")
    args = parser.parse_args()
    if CLIENT_CPU is not None:
        os.sched_setaffinity(0, {CLIENT_CPU})
        print(f"server pinned to CPU {SERVER_CPU}, load generator to CPU {CLIENT_CPU}")

    workdir = Path(tempfile.mkdtemp(prefix="bench-webhook-"))
    (workdir / "bare_app.py").write_text(BARE_APP)
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url or f"sqlite:///{workdir / 'bench.db'}",
        "WECHAT_TOKEN": TOKEN,
        "WECHAT_APP_ID": APP_ID,
        "WECHAT_AES_KEY": AES_KEY,
        "RUN_WORKER_IN_SERVE": "false",
        "PYTHONPATH": f"{REPO}:{workdir}",
    }
    env.pop("REDIS_URL", None)
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    bare_port, app_port = free_port(), free_port()
    bare = start_server("bare_app:app", bare_port, env, workdir)
    full = start_server("bot.app:create_app", app_port, env, REPO)
    try:
        bare_figures = asyncio.run(drive(bare_port, False, args.seconds, args.connections))
        print(
            f"bare FastAPI   {bare_figures['rps']:8.0f} req/s  p50 {bare_figures['p50']:6.1f} ms  "
            f"p99 {bare_figures['p99']:6.1f} ms  errors {bare_figures['errors']}"
        )
        for mode in ("plain", "aes") if args.mode == "both" else (args.mode,):
            figures = asyncio.run(drive(app_port, mode == "aes", args.seconds, args.connections))
            print(
                f"wechat {mode:<6}  {figures['rps']:8.0f} req/s  p50 {figures['p50']:6.1f} ms  "
                f"p99 {figures['p99']:6.1f} ms  errors {figures['errors']}  "
                f"ratio {figures['rps'] / bare_figures['rps']:.2f}"
            )
    finally:
        for process in (bare, full):
            process.terminate()
            process.wait(timeout=10)


if __name__ == "__main__":
    main()
