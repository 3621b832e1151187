"""Deliver outbox messages through the Telegram Bot API from worker threads, rate-limited, one part after another."""

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import threading
import time
import warnings
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError
from telegram.ext import AIORateLimiter, ExtBot
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from bot.channels.telegram import CHANNEL
from bot.channels.telegram.render import Outgoing, render
from core.outbox.senders import DeliveryError, RetryLater, Undeliverable
from core.settings import get_settings
from core.store import Store, get_store

log = logging.getLogger(__name__)

T = TypeVar("T")
PER_CHAT_INTERVAL_SECONDS = 1.0  # Telegram: avoid more than one message per second in one chat
PROGRESS_SECONDS = 24 * 3600
CONNECTION_POOL_SIZE = 16


def api_urls(api_base: str) -> tuple[str, str]:
    """base_url and base_file_url for a Bot API server such as "https://api.telegram.org"."""
    base = api_base.rstrip("/")
    return f"{base}/bot", f"{base}/file/bot"


def make_bot(*, token: str, api_base: str, rate_limited: bool = True) -> ExtBot:
    """An ExtBot for the API server, with AIORateLimiter (30 msg/s overall, 20/min per group, no retries)."""
    base_url, base_file_url = api_urls(api_base)
    return ExtBot(
        token,
        base_url=base_url,
        base_file_url=base_file_url,
        request=HTTPXRequest(connection_pool_size=CONNECTION_POOL_SIZE, pool_timeout=5.0),
        rate_limiter=AIORateLimiter(max_retries=0) if rate_limited else None,
    )


def retry_seconds(exc: RetryAfter) -> float:
    """RetryAfter's wait in seconds, whichever type PTB returns it as."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def delivery_error(exc: TelegramError) -> DeliveryError:
    """What a Bot API error means for the outbox: try again later, or give up on this message."""
    if isinstance(exc, RetryAfter):
        return RetryLater("telegram: flood control", retry_after=retry_seconds(exc))
    if isinstance(exc, Forbidden):  # bot blocked by the user, user deactivated, kicked
        return Undeliverable(exc.message, code="forbidden")
    if isinstance(exc, BadRequest):  # subclass of NetworkError: check it first
        code = "chat_not_found" if "chat not found" in exc.message.lower() else "bad_request"
        return Undeliverable(exc.message, code=code)
    if isinstance(exc, ChatMigrated):
        return Undeliverable(f"chat migrated to {exc.new_chat_id}", code="chat_migrated")
    if isinstance(exc, InvalidToken):  # our configuration, not the recipient: keep the message
        return RetryLater(f"telegram: bot token rejected ({exc.message})")
    if isinstance(exc, NetworkError):  # includes TimedOut
        return RetryLater(f"telegram: {exc.message}")
    return RetryLater(f"telegram: {exc.__class__.__name__}: {exc.message}")


def progress_key(chat_id: int, payload: dict[str, Any]) -> str:
    """Store key counting the parts of this payload already delivered to this chat."""
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]
    return f"telegram:progress:{chat_id}:{digest}"


class TelegramSender:
    """Sender for the outbox worker: `send` blocks the calling thread while a private event loop talks to Telegram.

    Every part of a payload goes out in order; parts to one chat are spaced `per_chat_interval` seconds apart.
    When a later part fails, the parts already delivered are remembered in the store so the retry resumes there.
    """

    channel = CHANNEL

    def __init__(
        self,
        *,
        token: str | None = None,
        api_base: str | None = None,
        store: Store | None = None,
        per_chat_interval: float = PER_CHAT_INTERVAL_SECONDS,
        timeout: float = 10.0,
    ) -> None:
        settings = get_settings()
        token = token or settings.telegram_bot_token
        if not token:
            raise ValueError("TELEGRAM_BOT_TOKEN is not set")
        self.bot = make_bot(token=token, api_base=api_base or settings.telegram_api_base)
        self.store = store or get_store()
        self.per_chat_interval = per_chat_interval
        self.timeout = timeout
        self._next_slot: dict[int, float] = {}
        self._ready = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, recipient: str, payload: dict[str, Any]) -> None:
        """Deliver every part of the payload to the chat; raise RetryLater or Undeliverable when that fails."""
        try:
            chat_id = int(recipient)
        except ValueError:
            raise Undeliverable(f"not a Telegram chat id: {recipient!r}", code="bad_recipient") from None
        parts = render(payload)
        key = progress_key(chat_id, payload)
        done = int(self.store.get(key) or 0)
        for index in range(done, len(parts)):
            self._run(self._send_part(chat_id, parts[index]))
            if index + 1 < len(parts):
                self.store.set(key, str(index + 1), ttl=PROGRESS_SECONDS)
        if done or len(parts) > 1:
            self.store.delete(key)

    def close(self) -> None:
        """Shut the bot down and stop the event loop thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            self._ready = False
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.bot.shutdown(), loop).result(self.timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(self.timeout)
        loop.close()

    def __enter__(self) -> "TelegramSender":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the sender's loop and wait for it, turning Bot API errors into delivery errors."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._ensure_loop())
        try:
            return future.result(self.timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise RetryLater(f"telegram: no answer within {self.timeout:.0f} s") from None
        except TelegramError as exc:
            raise delivery_error(exc) from exc

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="telegram-sender", daemon=True)
                self._thread.start()
            return self._loop

    async def _send_part(self, chat_id: int, part: Outgoing) -> None:
        """Send one part once the chat's slot is free (runs on the sender's loop)."""
        if not self._ready:
            await self.bot.initialize()
            self._ready = True
        await asyncio.sleep(self._reserve_slot(chat_id))
        await self.bot.send_message(chat_id, part.text, reply_markup=part.reply_markup)

    def _reserve_slot(self, chat_id: int) -> float:
        """Seconds to wait before this chat's next message; only ever called on the loop thread."""
        now = time.monotonic()
        if len(self._next_slot) > 10_000:
            self._next_slot = {chat: slot for chat, slot in self._next_slot.items() if slot > now}
        slot = max(now, self._next_slot.get(chat_id, now))
        self._next_slot[chat_id] = slot + self.per_chat_interval
        return slot - now
