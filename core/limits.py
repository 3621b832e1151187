"""Size caps: a request-body cap for every route (enforced before the body is read, or while it streams), and how
much of a message the matcher and its re-ranker may look at."""

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The matcher never reads more than this much of a text (the whole text is still stored and shown).
MATCH_MAX_CHARS = 2000
# Texts longer than this are matched on an excerpt of their most informative clauses, of at most this length.
EXCERPT_CHARS = 128
# The embedding re-ranker's input (its cost grows with the length: 2,000 characters take over a second).
RERANK_MAX_CHARS = 128
# The unanswered-questions key is computed from this much of a text.
KEY_SCAN_CHARS = 1000


class BodyTooLarge(Exception):
    """The body grew past the cap while streaming."""


class BodyLimitMiddleware:
    """Answers 413 to any request whose body is larger than `max_bytes` (routes may set lower caps of their own)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        seen = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    if not started and not refused:
                        refused = True
                        await self._too_large(scope, receive, send)
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:  # the 413 is already out: whatever the app answers to the aborted read is dropped
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started and not refused:
                await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = PlainTextResponse(f"request body larger than {self.max_bytes} bytes", status_code=413)
        await response(scope, receive, send)
