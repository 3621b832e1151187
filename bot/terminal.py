"""The terminal chat's inbox: what agents send the terminal user (replies, the rating question), fetched from the
outbox in the background and printed above the prompt while the merchant types."""

import logging
import sys
import threading
import unicodedata
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

try:
    import readline  # line editing at the prompt, and what was typed so far when a message is printed above it
except ImportError:  # not on every platform
    readline = None

from core.database import session_scope
from core.outbox import service as outbox

log = logging.getLogger(__name__)

CHANNEL = "terminal"
PROMPT = "您> "
PREFIX = "[客服] "
POLL_SECONDS = 1.0


def display_width(text: str) -> int:
    """Columns the text takes on a terminal (Chinese characters take two)."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def render(payload: dict[str, Any]) -> str:
    """One message as terminal lines: the prefix, the text (continued lines indented) and numbered options."""
    lines = (payload.get("text") or "").split("\n")
    options = payload.get("options") or []
    lines += [f"{number}. {option.get('label', '')}" for number, option in enumerate(options, 1)]
    return PREFIX + ("\n" + " " * display_width(PREFIX)).join(lines)


def _readline_buffer() -> str:
    """What the merchant has typed so far at the prompt ("" without readline)."""
    return readline.get_line_buffer() if readline is not None else ""


class TerminalInbox:
    """Prints the user's new outbox messages every POLL_SECONDS on a daemon thread (fetching delivers them)."""

    def __init__(
        self,
        user_id: str,
        *,
        write: Callable[[str], None] | None = None,
        poll_seconds: float = POLL_SECONDS,
        lock: AbstractContextManager | None = None,
    ) -> None:
        self.user_id = user_id
        self.write = write or self._write_above_prompt
        self.poll_seconds = poll_seconds
        self.lock = lock or threading.Lock()
        with session_scope() as db_session:  # messages already delivered were seen: start after them
            self.after = outbox.last_delivered_id(db_session=db_session, channel=CHANNEL, recipient=user_id)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> list[str]:
        """Fetch and print what arrived since the last poll; return it as printed."""
        with session_scope() as db_session:
            messages = outbox.pull(db_session=db_session, channel=CHANNEL, recipient=self.user_id, after_id=self.after)
            arrived = [(message.id, render(message.payload)) for message in messages]
        for message_id, text in arrived:
            with self.lock:
                self.write(text)
            self.after = message_id
        return [text for _, text in arrived]

    def _write_above_prompt(self, text: str) -> None:
        """On a terminal, clear the prompt line, print the message and draw the prompt again with what was typed."""
        if sys.stdout.isatty():
            sys.stdout.write(f"\r\x1b[K{text}\n\n{PROMPT}{_readline_buffer()}")
        else:
            sys.stdout.write(f"\n{text}\n")
        sys.stdout.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # a database hiccup: try again at the next poll
                log.warning("terminal inbox: fetching agents' messages failed", exc_info=True)

    def start(self) -> "TerminalInbox":
        """Poll on a daemon thread until `stop`."""
        self._thread = threading.Thread(target=self._run, name="terminal-inbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
