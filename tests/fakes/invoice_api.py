"""A fake merchant-platform invoice API on 127.0.0.1: GET /invoices/{number}?code=…, with programmable misbehaviour."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.fakes import base_url, serve, shutdown

NORMAL = "normal"  # answer from `invoices` (404 for unknown numbers)
SLOW = "slow"  # sleep `slow_seconds`, then answer normally
ERROR = "error"  # answer `error_status` (500 unless set) with a JSON error body
NOT_FOUND = "404"  # answer 404 for every number
MALFORMED = "malformed"  # answer 200 with a body that is not JSON
DROP = "drop"  # close the connection without answering
MODES = frozenset({NORMAL, SLOW, ERROR, NOT_FOUND, MALFORMED, DROP})


class FakeInvoiceApi:
    """The invoice endpoint of a merchant platform, counting the requests it receives."""

    def __init__(self, *, token: str | None = "test-invoice-token") -> None:
        self.token = token
        self.invoices: dict[str, dict[str, Any]] = {}
        self.mode = NORMAL
        self.slow_seconds = 1.0
        self.error_status = 500
        self.requests: list[dict[str, Any]] = []
        self._script: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        """Where the server listens, e.g. http://127.0.0.1:54321."""
        return base_url(self._server)

    @property
    def request_count(self) -> int:
        """How many requests arrived (whatever was answered)."""
        with self._lock:
            return len(self.requests)

    def start(self) -> "FakeInvoiceApi":
        """Listen on a free port in a daemon thread."""
        self._stopping.clear()
        self._server = serve(_handler(self), "fake-invoice-api")
        return self

    def stop(self) -> None:
        """Stop listening; slow answers still pending return at once."""
        self._stopping.set()
        shutdown(self._server)
        self._server = None

    def add(self, *, number: str, status: Any = "issued", code: str | None = None, **fields: Any) -> dict[str, Any]:
        """Add (or replace) an invoice; the JSON object answered for it is returned."""
        invoice = {"number": number, "code": code, "status": status, **fields}
        with self._lock:
            self.invoices[number] = invoice
        return invoice

    def set_mode(self, mode: str, *, seconds: float | None = None, status: int | None = None) -> None:
        """Answer every later request in this mode (`seconds` for SLOW, `status` for ERROR)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        with self._lock:
            self.mode = mode
            if seconds is not None:
                self.slow_seconds = seconds
            if status is not None:
                self.error_status = status

    def script(self, *modes: str) -> None:
        """Answer the next requests in these modes, in order, then in the current mode again."""
        if not set(modes) <= MODES:
            raise ValueError(f"unknown mode in {modes!r}")
        with self._lock:
            self._script.extend(modes)

    # request handling, called from the server threads

    def answer(self, *, path: str, query: dict[str, str], authorization: str | None) -> tuple[str, int, Any]:
        """(mode, HTTP status, JSON body or raw text) for one request."""
        with self._lock:
            self.requests.append({"path": path, "query": query, "authorization": authorization})
            mode = self._script.pop(0) if self._script else self.mode
            slow_seconds, error_status = self.slow_seconds, self.error_status
        if self.token is not None and authorization != f"Bearer {self.token}":
            return mode, 401, {"error": "unauthorized"}
        if mode == SLOW:
            self._stopping.wait(slow_seconds)
        if mode == ERROR:
            return mode, error_status, {"error": "server error"}
        if mode == MALFORMED:
            return mode, 200, "<html>502 Bad Gateway</html>"
        if mode in (DROP, NOT_FOUND) or not path.startswith("/invoices/"):
            return mode, 404, {"error": "not found"}
        number = unquote(path.removeprefix("/invoices/"))
        with self._lock:
            invoice = self.invoices.get(number)
        code = query.get("code")
        if invoice is None or (code and invoice.get("code") and code != invoice["code"]):
            return mode, 404, {"error": "not found"}
        return mode, 200, invoice


def _handler(fake: FakeInvoiceApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            mode, status, data = fake.answer(
                path=url.path, query=query, authorization=self.headers.get("Authorization")
            )
            if mode == DROP:
                self.close_connection = True
                return
            raw = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
            body = raw.encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout) before the answer
                self.close_connection = True

    return Handler
