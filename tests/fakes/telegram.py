"""A fake Telegram Bot API on 127.0.0.1: getMe, sendMessage, answerCallbackQuery, getUpdates, setWebhook.

Answers like api.telegram.org (`{"ok": true, "result": …}` / `{"ok": false, "error_code", "description"}`),
records every call, and can be told to fail the next calls (429 with retry_after, 403 blocked, 400 chat not found).
"""

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from tests.fakes import base_url, serve, shutdown

TOKEN = "123456:TEST-token_for-fake"
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "发票助手", "username": "invoice_helper_bot"}
MAX_TEXT = 4096
MAX_POLL_WAIT_SECONDS = 1.0
# Parameters that are strings in the Bot API: kept as sent even when they look like JSON ("123").
STRING_PARAMS = frozenset({"text", "callback_query_id", "url", "secret_token", "parse_mode", "inline_message_id"})


@dataclass
class Call:
    """One Bot API request as the fake received it (form values JSON-decoded where they are JSON)."""

    method: str
    params: dict[str, Any]


@dataclass
class Failure:
    """A scripted error answer."""

    status: int
    description: str
    parameters: dict[str, Any] | None = None
    method: str | None = None  # None: the next call of any method except getMe/getUpdates
    after: int = 0  # let this many matching calls through first


@dataclass
class FakeTelegram:
    """The Bot API for one bot token, in a thread."""

    token: str = TOKEN
    calls: list[Call] = field(default_factory=list)
    _failures: list[Failure] = field(default_factory=list)
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _message_ids: itertools.count = field(default_factory=lambda: itertools.count(1000))
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadingHTTPServer | None = None

    @property
    def api_base(self) -> str:
        """The value for TELEGRAM_API_BASE, e.g. http://127.0.0.1:54321."""
        return base_url(self._server)

    def start(self) -> "FakeTelegram":
        """Listen on a free port in a daemon thread."""
        self._server = serve(_handler(self), "fake-telegram")
        return self

    def stop(self) -> None:
        """Stop listening and release waiting getUpdates calls."""
        with self._cond:
            self._cond.notify_all()
        shutdown(self._server)
        self._server = None

    # --- scripting ---

    def fail_next(
        self,
        status: int,
        description: str,
        *,
        retry_after: int | None = None,
        method: str | None = "sendMessage",
        after: int = 0,
    ) -> None:
        """Answer the next call of `method` (None: any method) with this error, after letting `after` through."""
        parameters = {"retry_after": retry_after} if retry_after is not None else None
        with self._cond:
            self._failures.append(Failure(status, description, parameters, method, after))

    def flood(self, retry_after: int = 3, *, after: int = 0) -> None:
        """Next sendMessage: 429 Too Many Requests with parameters.retry_after."""
        self.fail_next(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after, after=after)

    def block(self) -> None:
        """Next sendMessage: 403, the user blocked the bot."""
        self.fail_next(403, "Forbidden: bot was blocked by the user")

    def lose_chat(self) -> None:
        """Next sendMessage: 400 chat not found."""
        self.fail_next(400, "Bad Request: chat not found")

    def queue_update(self, update: dict[str, Any]) -> None:
        """Serve an update to the next getUpdates call."""
        with self._cond:
            self._updates.append(update)
            self._cond.notify_all()

    # --- inspection ---

    def calls_to(self, method: str) -> list[Call]:
        """Recorded calls of one method, in order."""
        with self._cond:
            return [call for call in self.calls if call.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> list[Call]:
        """Wait until `method` was called at least `count` times; return those calls."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([c for c in self.calls if c.method == method]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{method} called fewer than {count} times: {self.calls}")
                self._cond.wait(remaining)
            return [c for c in self.calls if c.method == method]

    # --- the API ---

    def answer(self, token: str, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Status and JSON body for one call."""
        if token != self.token:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        with self._cond:
            self.calls.append(Call(method, params))
            self._cond.notify_all()
            failure = self._take_failure(method)
        if failure is not None:
            body = {"ok": False, "error_code": failure.status, "description": failure.description}
            if failure.parameters:
                body["parameters"] = failure.parameters
            return failure.status, body
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        return handler(params)

    def _take_failure(self, method: str) -> Failure | None:
        for index, failure in enumerate(self._failures):
            generic = failure.method is None and method not in ("getMe", "getUpdates")
            if not (generic or failure.method == method):
                continue
            if failure.after > 0:
                failure.after -= 1
                return None
            return self._failures.pop(index)
        return None

    @staticmethod
    def _ok(result: Any) -> tuple[int, dict[str, Any]]:
        return 200, {"ok": True, "result": result}

    @staticmethod
    def _bad(description: str) -> tuple[int, dict[str, Any]]:
        return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {description}"}

    def _api_getMe(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self._ok({**BOT_USER, "can_join_groups": True, "can_read_all_group_messages": False})

    def _api_sendMessage(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        text = params.get("text")
        if "chat_id" not in params:
            return self._bad("chat_id is empty")
        if not isinstance(text, str) or not text.strip():
            return self._bad("message text is empty")
        if len(text.encode("utf-16-le")) // 2 > MAX_TEXT:
            return self._bad("message is too long")
        chat_id = int(params["chat_id"])
        message = {
            "message_id": next(self._message_ids),
            "from": BOT_USER,
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "date": int(time.time()),
            "text": text,
        }
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        return self._ok(message)

    def _api_answerCallbackQuery(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not params.get("callback_query_id"):
            return self._bad("query is too old and response timeout expired or query ID is invalid")
        return self._ok(True)

    def _api_setWebhook(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self._ok(True) if params.get("url") is not None else self._bad("bad webhook: URL is empty")

    def _api_deleteWebhook(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self._ok(True)

    def _api_getUpdates(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        wait = min(float(params.get("timeout") or 0), MAX_POLL_WAIT_SECONDS)
        deadline = time.monotonic() + wait
        with self._cond:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]  # offset confirms earlier ones
            while not self._updates and self._server is not None and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            limit = int(params.get("limit") or 100)
            return self._ok(list(self._updates[:limit]))


def _decode_form_value(value: str) -> Any:
    """PTB sends every non-string value JSON-encoded (numbers, booleans, reply_markup, lists)."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def _handler(fake: FakeTelegram) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve({})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            kind = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if kind == "application/json":
                params = json.loads(raw or b"{}")
                if isinstance(params.get("reply_markup"), str):
                    params["reply_markup"] = json.loads(params["reply_markup"])
            else:
                form = parse_qs(raw.decode("utf-8"), keep_blank_values=True)
                params = {key: values[-1] for key, values in form.items()}
                params = {k: (v if k in STRING_PARAMS else _decode_form_value(v)) for k, v in params.items()}
            self._serve(params)

        def _serve(self, params: dict[str, Any]) -> None:
            prefix, _, rest = self.path.split("?")[0].lstrip("/").partition("/")
            if not prefix.startswith("bot") or not rest:
                status, body = 404, {"ok": False, "error_code": 404, "description": "Not Found"}
            else:
                status, body = fake.answer(prefix[3:], rest, params)
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler
