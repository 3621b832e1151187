"""Handle one verified WeChat push: decide what it means, route it once, answer within WeChat's 5-second window.

WeChat waits 5 s for a passive reply and then re-delivers the same push (up to three retries). Each push is
claimed once in the store (`wx:msg:{openid}:{MsgId}` or `wx:evt:{openid}:{CreateTime}:{Event}`); the claiming
delivery runs the router in a worker thread. A reply ready within the budget is answered passively and kept under
`wx:reply:{key}` for retries; a later reply is acknowledged with "success" and sent through the outbox (客服 API).
Before that "success" goes out, a stand-in apology is queued in the outbox (due only after STAND_IN_SECONDS) and the
late reply takes its place: if the process dies in between, the merchant is asked to resend instead of hearing nothing.
"""

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from wechatpy.messages import BaseMessage

from bot.channels.wechat import CHANNEL
from bot.channels.wechat.render import PASSIVE_LIMIT_BYTES, reply_text, split_passive, text_xml, truncate
from bot.channels.wechat.sender import kf_unavailable
from core.database import session_scope
from core.messages import IncomingMessage, Reply
from core.outbox.service import cancel_unsent, enqueue, make_payload, replace_unsent
from core.settings import get_settings
from core.store import Store, best_effort, get_store
from handlers.router import Router

log = logging.getLogger(__name__)

# Custom-menu CLICK keys and the text each one routes as.
MENU_KEYS = {
    "FAQ_MENU": "菜单",  # the greeting menu: FAQ categories, invoice lookup, human agent
    "INVOICE_LOOKUP": "查发票",  # asks for the invoice number
    "HANDOFF": "转人工",  # hands the conversation to a human
}
GREETING_TEXT = "你好"
MENU_TEXT = "菜单"
ROUTED_EVENTS = frozenset({"subscribe", "subscribe_scan", "subscribe_scan_product"})
MEDIA_TYPES = frozenset({"image", "video", "shortvideo", "location", "link", "file", "miniprogrampage"})

MEDIA_REPLY = (
    "收到～不过我目前只能看懂文字消息，暂时无法识别图片、视频、位置、链接或文件。\n"
    "我可以解答开票、作废、红冲、查验、登录等问题，帮您查发票状态，或为您转人工客服。\n"
    "请直接用文字描述您的问题；查发票请以文字发送发票号码。"
)
VOICE_REPLY = (
    "抱歉，这条语音没能转成文字。请直接打字描述您的问题；如需使用语音，请公众号管理员在后台开启“接收语音识别结果”。"
)
ERROR_REPLY = "抱歉，系统繁忙，暂时无法处理您的消息，请稍后再试，或回复“转人工”联系人工客服。"
SLOW_REPLY = "抱歉，这个问题处理得有点久，请稍后再发送一次您的问题。"
LOST_REPLY = "抱歉，系统繁忙，您刚才的消息没能处理完成，请重新发送一次。"  # the stand-in of a late reply
TRUNCATED_NOTE = "（内容较长，已省略后半部分，可回复“转人工”获取完整说明）"

CLAIM_SECONDS = 300
REPLY_SECONDS = 300
ACK = "success"  # the stored marker meaning "answer retries with success"
POLL_SECONDS = 0.05
STAND_IN_SECONDS = 60.0  # a late reply replaces its stand-in long before; only a crash lets the stand-in go out
STAND_IN_WAIT_SECONDS = 0.5  # at most this long past the budget to queue the stand-in before acknowledging

_background: set[asyncio.Future] = set()
# Routing is CPU work under the GIL: two threads keep the event loop responsive without threads fighting for it.
_ROUTER_THREADS = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="wechat-router")


@dataclass(frozen=True)
class Plan:
    """What a push asks for: route `text`, answer `static` passively, or only acknowledge (both None)."""

    text: str | None = None
    static: str | None = None


def raw_type(message: BaseMessage) -> str:
    """The push's MsgType as sent (wechatpy maps unregistered types such as "file" to "unknown")."""
    return str(getattr(message, "_data", {}).get("MsgType") or message.type).lower()


def plan(message: BaseMessage) -> Plan:
    """Decide what to do with a parsed push."""
    kind = message.type
    if kind == "text":
        return Plan(text=message.content or "")
    if kind == "voice":
        recognition = (getattr(message, "recognition", None) or "").strip()
        return Plan(text=recognition) if recognition else Plan(static=VOICE_REPLY)
    if kind in MEDIA_TYPES or raw_type(message) in MEDIA_TYPES:
        return Plan(static=MEDIA_REPLY)
    if kind == "event":
        event = getattr(message, "event", "")
        if event in ROUTED_EVENTS:
            return Plan(text=GREETING_TEXT)
        if event == "click":
            return Plan(text=MENU_KEYS.get((getattr(message, "key", None) or "").strip(), MENU_TEXT))
    return Plan()


def dedupe_key(message: BaseMessage) -> str:
    """The key WeChat's retries of this push share: openid + MsgId for messages (another openid's MsgId is another
    push), openid + CreateTime + Event for events."""
    if message.id:
        return f"wx:msg:{message.source}:{message.id}"
    return f"wx:evt:{message.source}:{message.time}:{getattr(message, 'event', message.type)}"


def reply_key(key: str) -> str:
    """Store key of the passive reply given to the first delivery of a push."""
    return f"wx:reply:{key}"


def passive_xml(message: BaseMessage, text: str) -> str:
    """A passive text reply to `message`."""
    return text_xml(to_user=message.source, from_user=message.target, content=text)


async def respond(message: BaseMessage, *, router: Router, deadline: float) -> str | None:
    """The plaintext XML to answer a push with, or None to answer "success"; `deadline` is a monotonic time."""
    action = plan(message)
    if action.static is not None:
        return passive_xml(message, action.static)
    if action.text is None:
        return None
    store = get_store()
    key = dedupe_key(message)
    if not best_effort(lambda: store.add(key, "1", ttl=CLAIM_SECONDS), True, what="wechat retry de-duplication"):
        return await _await_first(store, key, deadline)
    job = _Job(
        router=router,
        store=store,
        key=key,
        message=message,
        incoming=IncomingMessage(
            channel=CHANNEL, user_id=message.source, text=action.text, message_id=str(message.id or key)
        ),
        passive_only=best_effort(
            lambda: kf_unavailable(store, get_settings().wechat_app_id), False, what="客服 API status"
        ),
    )
    return await job.run(deadline)


async def _await_first(store: Store, key: str, deadline: float) -> str | None:
    """A repeated delivery: wait (within the budget) for the first delivery's reply and give the same one."""
    while True:
        stored = store.get(reply_key(key))
        if stored is not None:
            return None if stored == ACK else stored
        if time.monotonic() + POLL_SECONDS > deadline:
            log.info("wechat retry of %s answered with success while the first is still running", key)
            return None
        await asyncio.sleep(POLL_SECONDS)


@dataclass
class _Job:
    """One claimed push: the router runs in a worker thread; the request and the thread agree on who answers."""

    router: Router
    store: Store
    key: str
    message: BaseMessage
    incoming: IncomingMessage
    passive_only: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    late: bool = False
    silent: bool = False
    xml: str | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    loop: asyncio.AbstractEventLoop | None = None

    async def run(self, deadline: float) -> str | None:
        """Answer passively when the reply is ready in time, else "success" and let the thread use the outbox."""
        self.loop = asyncio.get_running_loop()
        task = self.loop.run_in_executor(_ROUTER_THREADS, self._work)
        _background.add(task)
        task.add_done_callback(_background.discard)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ready.wait(), timeout=max(0.0, deadline - time.monotonic()))
        with self.lock:
            if self.xml is not None or self.silent:
                return self.xml
            self.late = True
            if self.passive_only:
                self.xml = passive_xml(self.message, SLOW_REPLY)
        if self.xml is None:
            await self._queue_stand_in()
        self._remember(self.xml or ACK)
        log.info("wechat reply for %s not ready in time; acknowledged", self.key)
        return self.xml

    async def _queue_stand_in(self) -> None:
        """Queue the stand-in apology before "success" tells WeChat the push is handled (and stops its retries)."""
        queue = asyncio.to_thread(
            _enqueue,
            self.incoming.user_id,
            LOST_REPLY,
            None,
            dedupe_key=f"wechat:{self.key}",
            delay_seconds=STAND_IN_SECONDS,
        )
        try:
            await asyncio.wait_for(queue, timeout=STAND_IN_WAIT_SECONDS)
        except TimeoutError:
            log.warning("wechat push %s: no stand-in reply queued in time; acknowledged anyway", self.key)

    def _work(self) -> None:
        """Worker thread: route and deliver; nothing escapes into the never-awaited task."""
        try:
            self._route_and_deliver()
        except Exception:
            log.exception("wechat push %s: delivering the reply failed", self.key)

    def _route_and_deliver(self) -> None:
        """Route, then answer passively (rest via the outbox) or, when late, all via the outbox."""
        reply = _route(self.router, self.incoming)
        if reply.silent:  # a person is handling the conversation: acknowledge, send nothing
            with self.lock:
                self.silent = not self.late
                late = self.late
                self._remember(ACK)
            if late and not self.passive_only:
                _cancel_stand_in(self.incoming.user_id, dedupe_key=f"wechat:{self.key}")
            self._notify()
            return
        text = reply_text(reply)
        first, rest = split_passive(text)
        if rest and self.passive_only:
            first, rest = truncate(text, PASSIVE_LIMIT_BYTES, TRUNCATED_NOTE), ""
        with self.lock:
            late = self.late
            if not late:
                self.xml = passive_xml(self.message, first)
                self._remember(self.xml)
        if late:
            if self.passive_only:
                log.warning("wechat reply for %s dropped: too late and 客服 API unavailable", self.key)
                return
            _queue_late(self.incoming.user_id, reply.text, _options(reply), dedupe_key=f"wechat:{self.key}")
            return
        self._notify()
        if rest:
            _enqueue(self.incoming.user_id, rest, None, dedupe_key=f"wechat:{self.key}:part2")

    def _remember(self, answer: str) -> None:
        """Keep the answer for WeChat's retries of this push (skipped when the store is down)."""
        best_effort(
            lambda: self.store.set(reply_key(self.key), answer, ttl=REPLY_SECONDS), None, what="wechat reply cache"
        )

    def _notify(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.ready.set)
        except RuntimeError:  # the request's event loop is gone
            log.debug("wechat request loop closed before the reply for %s was ready", self.key)


def _route(router: Router, incoming: IncomingMessage) -> Reply:
    """The router's reply, or an apology when it fails."""
    try:
        with session_scope() as db_session:
            return router.handle(incoming, db_session=db_session)
    except Exception:
        log.exception("router failed on wechat message %s", incoming.message_id)
        return Reply(text=ERROR_REPLY, intent="fallback")


def _options(reply: Reply) -> list[dict[str, Any]]:
    return [{"label": option.label, "payload": option.payload} for option in reply.options]


def _enqueue(
    openid: str, text: str, options: list[dict[str, Any]] | None, *, dedupe_key: str, delay_seconds: float = 0.0
) -> None:
    """Queue text for the 客服 API; failures are logged, never raised into the worker thread."""
    try:
        with session_scope() as db_session:
            enqueue(
                db_session=db_session,
                channel=CHANNEL,
                recipient=openid,
                text=text,
                options=options,
                dedupe_key=dedupe_key,
                delay_seconds=delay_seconds,
            )
    except Exception:
        log.exception("could not queue the wechat reply %s", dedupe_key)


def _queue_late(openid: str, text: str, options: list[dict[str, Any]], *, dedupe_key: str) -> None:
    """Queue a late reply in place of its stand-in (whichever was queued first); if the stand-in already went out (the
    reply took longer than STAND_IN_SECONDS), the reply follows it as a message of its own."""
    try:
        with session_scope() as db_session:
            kwargs = {"db_session": db_session, "channel": CHANNEL, "recipient": openid, "text": text}
            queued = enqueue(**kwargs, options=options, dedupe_key=dedupe_key)
            if queued.payload == make_payload(text, options):
                return
            if not replace_unsent(db_session=db_session, dedupe_key=dedupe_key, text=text, options=options):
                enqueue(**kwargs, options=options, dedupe_key=f"{dedupe_key}:late")
    except Exception:
        log.exception("could not queue the wechat reply %s", dedupe_key)


def _cancel_stand_in(openid: str, *, dedupe_key: str) -> None:
    """No reply after all (a person has the conversation): the stand-in, queued before or after this, is not sent."""
    try:
        with session_scope() as db_session:
            enqueue(  # a place-holder when the stand-in is not queued yet, so that it finds the key taken
                db_session=db_session,
                channel=CHANNEL,
                recipient=openid,
                text=LOST_REPLY,
                dedupe_key=dedupe_key,
                delay_seconds=STAND_IN_SECONDS,
            )
            cancel_unsent(db_session=db_session, dedupe_key=dedupe_key, reason="no reply: a person has it")
    except Exception:
        log.exception("could not cancel the wechat stand-in reply %s", dedupe_key)
