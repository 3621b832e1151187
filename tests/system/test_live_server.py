"""The console's event stream on a real `merchant-assist serve`: a page listening for notices does not keep the
server from stopping (it is closed after the grace period; browsers reconnect to the next server)."""

import re
import signal
import socket
import subprocess
import time

import httpx

from bot.cli import SHUTDOWN_GRACE_SECONDS
from tests.system.procs import BIN, Server, server_env

PASSWORD = "correct horse battery"


def test_serve_stops_within_the_grace_period_while_a_console_page_listens(tmp_path):
    env = server_env(DATABASE_URL=f"sqlite:///{tmp_path / 'live.db'}")
    created = subprocess.run(
        [str(BIN / "merchant-assist"), "user", "create", "wangfang", "--role", "agent", "--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    server = Server(env, log_path=tmp_path / "serve.log").start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/login").text).group(1)
            done = client.post(
                "/console/login", data={"username": "wangfang", "password": PASSWORD, "csrf_token": token}
            )
            assert done.status_code == 303
            cookie = "; ".join(f"{name}={value}" for name, value in client.cookies.items())
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as page:
            page.sendall(f"GET /console/events HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n\r\n".encode())
            opening = page.recv(4096)
            assert opening.startswith(b"HTTP/1.1 200") and b"text/event-stream" in opening
            started = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            server.process.wait(timeout=SHUTDOWN_GRACE_SECONDS + 15)
            assert time.monotonic() - started < SHUTDOWN_GRACE_SECONDS + 10
    finally:
        server.stop()
