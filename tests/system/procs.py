"""Real processes and infrastructure for the fault tests: `merchant-assist serve` in its own process group, a private
redis-server, a scratch PostgreSQL database, a TCP proxy that can cut the database off, and signed WeChat pushes.

Everything here is started by the test that uses it and stopped by it (`finally`), by process id or group id.
"""

import contextlib
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlencode

import httpx
import xmltodict
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from core.settings import Settings
from tests.conftest import POSTGRES_URL, REPO

BIN = Path(sys.executable).parent
T = TypeVar("T")

ADMIN_TOKEN = "system-admin-token"  # every server_env has it: tests create integrations through the admin API
WECHAT_TOKEN = "fault-token"
WECHAT_APP_ID = "wx-fault-app"
WECHAT_APP_SECRET = "fault-secret"
GH = "gh_fault_tests"


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GaveUp(Exception):
    """Raised by a `wait_until` check to stop waiting at once (e.g. the server process exited)."""


def wait_until(check: Callable[[], T], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `check` until it returns something truthy (other exceptions count as "not yet"); fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = check()
            if result:
                return result
            last = result
        except GaveUp:
            raise
        except Exception as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


# --- redis-server ---


class RedisServer:
    """A private redis-server (no persistence) that a test may stop and start again on the same port."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        command += ["--daemonize", "no", "--dir", str(self.workdir)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._answers, timeout=15, what=f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        """Kill it (SIGKILL: as abrupt as a crash) and wait until the port is closed."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


def start_redis(workdir: Path) -> RedisServer:
    """A private redis-server, or a skip (a failure under REQUIRE_SERVICES=1) when redis-server is missing."""
    from tests.conftest import service_unavailable

    try:
        return RedisServer(workdir).start()
    except (OSError, AssertionError) as exc:
        service_unavailable("redis-server", exc)
        raise


# --- PostgreSQL ---


class ScratchDatabase:
    """A PostgreSQL database of its own (CREATE DATABASE through an AUTOCOMMIT engine), dropped at the end."""

    def __init__(self) -> None:
        self.name = f"fault_{uuid.uuid4().hex[:10]}"
        base = make_url(POSTGRES_URL)
        self._admin = create_engine(
            base.set(database="postgres").render_as_string(hide_password=False), isolation_level="AUTOCOMMIT"
        )
        self.url = base.set(database=self.name).render_as_string(hide_password=False)
        self._engine: Engine | None = None

    def create(self) -> "ScratchDatabase":
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.name}"'))
        return self

    def url_via(self, port: int) -> str:
        """The database's URL through a proxy listening on 127.0.0.1:`port`."""
        return make_url(self.url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)

    @property
    def engine(self) -> Engine:
        """An engine for the test's own queries (direct, not through any proxy)."""
        if self._engine is None:
            self._engine = create_engine(self.url, pool_pre_ping=True)
        return self._engine

    def scalar(self, sql: str, **params):
        with self.engine.connect() as connection:
            return connection.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params) -> list:
        with self.engine.connect() as connection:
            return list(connection.execute(text(sql), params))

    def execute(self, sql: str, **params) -> int:
        with self.engine.begin() as connection:
            return connection.execute(text(sql), params).rowcount

    def drop(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        with contextlib.suppress(Exception), self._admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self._admin.dispose()


@contextlib.contextmanager
def scratch_database() -> Iterator[ScratchDatabase]:
    """A fresh database, or a skip (a failure under REQUIRE_SERVICES=1) when PostgreSQL is unreachable."""
    from tests.conftest import service_unavailable

    database = ScratchDatabase()
    try:
        database.create()
    except Exception as exc:
        service_unavailable("PostgreSQL", exc)
    try:
        yield database
    finally:
        database.drop()


# --- TCP proxy ---


class TcpProxy:
    """Forwards 127.0.0.1:`port` to a target; `stop()` closes the port and cuts every open connection."""

    def __init__(self, target: tuple[str, int], port: int | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> "TcpProxy":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="tcp-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # stopped meanwhile
                    client.close()
                    upstream.close()
                    return
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            with self._lock:
                self._sockets -= {source, sink}


# --- the server ---


def server_env(**values: str) -> dict[str, str]:
    """This process's environment without any of the application's settings, plus `values`."""
    settings = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in settings and k != "PROMETHEUS_MULTIPROC_DIR"}
    env |= {
        "PYTHONPATH": str(REPO),
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "INFO",
        "MATCHER_EMBEDDINGS": "false",  # the lexical matcher answers the shipped questions; spare the 2 CPUs
        "INBOUND_MESSAGES_PER_MINUTE": "0",
        "WECHAT_TOKEN": WECHAT_TOKEN,
        "WECHAT_APP_ID": WECHAT_APP_ID,
        "ADMIN_TOKEN": ADMIN_TOKEN,
    }
    return env | values


def api_headers(base_url: str, *, slug: str = "system", admin_token: str = ADMIN_TOKEN) -> dict[str, str]:
    """Create an integration on a running server (admin API) and return the headers that authenticate /api/chat
    with its key; its users are stored as "<slug>:<user_id>"."""
    response = httpx.post(
        f"{base_url}/api/admin/integrations",
        json={"slug": slug, "name": f"system tests ({slug})"},
        headers={"Authorization": f"Bearer {admin_token}"},
        timeout=30,
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['api_key']}"}


class Server:
    """`merchant-assist serve` in a new session (its own process group, so workers die with it)."""

    def __init__(self, env: dict[str, str], *, log_path: Path, workers: int = 1, port: int | None = None) -> None:
        self.env = env
        self.workers = workers
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, ready_timeout: float = 150.0) -> "Server":
        """Start and wait until every worker finished its start-up and accepts connections."""
        command = [str(BIN / "merchant-assist"), "serve", "--port", str(self.port), "--workers", str(self.workers)]
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts + 1}: {' '.join(command)}\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.starts += 1
        wait_until(
            lambda: self._check_alive() and len(self.accepting()) >= self.workers,
            timeout=ready_timeout,
            interval=0.2,
            what=f"`serve --workers {self.workers}` to start (log: {self.log_path})",
        )
        wait_until(
            lambda: httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200, timeout=30, what="/healthz"
        )
        return self

    def accepting(self) -> list[int]:
        """The processes whose event loop watches the listening socket: workers done with their start-up.

        (Independent of what the log says: a worker starts polling the shared socket only after its lifespan
        start-up, and /proc then shows the socket among its epoll's targets.)
        """
        inodes = _listening_inodes(self.port)
        ready = []
        for pid in self.pids():
            with contextlib.suppress(OSError):
                fds = {int(fd.name) for fd in Path(f"/proc/{pid}/fd").iterdir() if _link(fd) in inodes}
                polls = [fd for fd in Path(f"/proc/{pid}/fd").iterdir() if _link(fd) == "anon_inode:[eventpoll]"]
                watched = {
                    int(line.split()[1])
                    for poll in polls
                    for line in Path(f"/proc/{pid}/fdinfo/{poll.name}").read_text().splitlines()
                    if line.startswith("tfd:")
                }
                if fds & watched:
                    ready.append(pid)
        return ready

    def _check_alive(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise GaveUp(f"serve exited with {self.process.returncode}:\n{self.log()[-3000:]}")
        return True

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def pids(self) -> list[int]:
        """Every live process of the server's group (master, workers, helpers)."""
        if self.process is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[2]) == self.process.pid and fields[0] != "Z":  # pgid, state
                        found.append(int(entry.name))
        return found

    def workers_cpu(self) -> dict[int, float]:
        """CPU seconds used so far by each worker process (those accepting on the port)."""
        ticks = os.sysconf("SC_CLK_TCK")
        used = {}
        for pid in self.accepting():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                used[pid] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        return used

    def kill(self) -> None:
        """SIGKILL the whole group at once: master and workers die mid-whatever."""
        self._signal_group(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)
        wait_until(lambda: not self.pids(), timeout=10, what="the killed server's processes to go")

    def stop(self) -> None:
        """Stop politely (SIGTERM), then SIGKILL whatever is left."""
        if self.process is None:
            return
        self._signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=20)
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self.process = None

    def _signal_group(self, signum: int) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signum)


def _link(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _listening_inodes(port: int) -> set[str]:
    """`socket:[inode]` of the sockets listening on 127.0.0.1:`port` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            found.add(f"socket:[{fields[9]}]")
    return found


# --- WeChat pushes ---


def signed_query(openid: str) -> dict[str, str]:
    """The query string WeChat adds to a push: signature over token, timestamp and nonce."""
    timestamp, nonce = str(int(time.time())), str(random.randrange(10**9))
    signature = hashlib.sha1("".join(sorted([WECHAT_TOKEN, timestamp, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": timestamp, "nonce": nonce, "openid": openid}


def text_push(openid: str, content: str, msg_id: int, created: int | None = None) -> bytes:
    """A plain-mode text message push."""
    return (
        f"<xml><ToUserName><![CDATA[{GH}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{created or int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    ).encode()


def push_url(base_url: str, openid: str) -> str:
    return f"{base_url}/wechat?{urlencode(signed_query(openid))}"


def passive_content(body: str) -> str | None:
    """The text of a passive reply, or None for "success" (or an empty body)."""
    if body.strip() in ("", "success"):
        return None
    return str(xmltodict.parse(body)["xml"]["Content"])
