"""A fake api.weixin.qq.com on 127.0.0.1: access tokens and 客服 text messages, with scriptable errors."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes import base_url, serve, shutdown

# errmsg texts as the real API answers them (HTTP 200 with a JSON error body).
ERRMSGS = {
    40001: "invalid credential, access_token is invalid or not latest",
    40014: "invalid access_token",
    40125: "invalid appsecret",
    42001: "access_token expired",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of send message quota",
    48001: "api unauthorized",
}


class FakeTencent:
    """The token and custom-send endpoints of the WeChat API, recording what they receive."""

    def __init__(self, *, appid: str = "wx-test-app", secret: str = "test-secret", expires_in: int = 7200) -> None:
        self.appid = appid
        self.secret = secret
        self.expires_in = expires_in
        self.token_fetches = 0
        self.sent: list[dict[str, Any]] = []
        self.send_attempts = 0
        self._valid: set[str] = set()
        self._expired: set[str] = set()
        self._send_errors: list[int] = []
        self._http_errors: list[int] = []
        self._delays: list[float] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        """Where the server listens, e.g. http://127.0.0.1:54321."""
        return base_url(self._server)

    def start(self) -> "FakeTencent":
        """Listen on a free port in a daemon thread."""
        self._server = serve(_handler(self), "fake-tencent")
        return self

    def stop(self) -> None:
        """Stop listening."""
        shutdown(self._server)
        self._server = None

    def fail_next_sends(self, *errcodes: int) -> None:
        """Answer the next custom-send calls with these error codes, in order (0: succeed)."""
        with self._lock:
            self._send_errors.extend(errcodes)

    def fail_next_http(self, *statuses: int) -> None:
        """Answer the next custom-send calls with these HTTP statuses."""
        with self._lock:
            self._http_errors.extend(statuses)

    def delay_next_sends(self, *seconds: float) -> None:
        """Sleep before answering the next custom-send calls (to provoke client timeouts)."""
        with self._lock:
            self._delays.extend(seconds)

    def revoke_tokens(self) -> None:
        """Make every issued token invalid (40001), as a fetch by another party would."""
        with self._lock:
            self._valid.clear()

    def expire_tokens(self) -> None:
        """Make every issued token expired (42001)."""
        with self._lock:
            self._expired |= self._valid
            self._valid.clear()

    def texts(self) -> list[str]:
        """Contents of the text messages received."""
        return [body["text"]["content"] for body in self.sent]

    # request handling, called from the server threads

    def issue_token(self, query: dict[str, str]) -> dict[str, Any]:
        if query.get("grant_type") != "client_credential" or query.get("appid") != self.appid:
            return _error(40013 if query.get("appid") != self.appid else 40002, "invalid appid or grant_type")
        if query.get("secret") != self.secret:
            return _error(40125)
        with self._lock:
            self.token_fetches += 1
            token = f"TOKEN-{self.token_fetches}-{time.monotonic_ns()}"
            self._valid.add(token)
        return {"access_token": token, "expires_in": self.expires_in}

    def custom_send(self, token: str, body: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.send_attempts += 1
            delay = self._delays.pop(0) if self._delays else 0.0
            http_status = self._http_errors.pop(0) if self._http_errors else 200
        if delay:
            time.sleep(delay)
        if http_status != 200:
            return http_status, {"error": "server error"}
        with self._lock:
            if token in self._expired:
                return 200, _error(42001)
            if token not in self._valid:
                return 200, _error(40001)
            errcode = self._send_errors.pop(0) if self._send_errors else 0
            if errcode:
                return 200, _error(errcode)
            try:
                data = json.loads(body.decode("utf-8"))
            except ValueError:
                return 200, _error(47001, "data format error")
            self.sent.append(data)
        return 200, {"errcode": 0, "errmsg": "ok"}


def _error(errcode: int, errmsg: str | None = None) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": f"{errmsg or ERRMSGS.get(errcode, 'error')} rid: fake-{errcode}"}


def _handler(fake: FakeTencent) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _query(self) -> dict[str, str]:
            return {key: values[0] for key, values in parse_qs(urlsplit(self.path).query).items()}

        def _answer(self, status: int, data: dict[str, Any]) -> None:
            body = json.dumps(data, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if urlsplit(self.path).path == "/cgi-bin/token":
                self._answer(200, fake.issue_token(self._query()))
            else:
                self._answer(404, {"errcode": 404, "errmsg": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if urlsplit(self.path).path == "/cgi-bin/message/custom/send":
                self._answer(*fake.custom_send(self._query().get("access_token", ""), body))
            else:
                self._answer(404, {"errcode": 404, "errmsg": "not found"})

    return Handler
