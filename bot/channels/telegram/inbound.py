"""Telegram updates → router → outbox: the PTB handlers, the Application (webhook or polling) and setWebhook.

Every handled update is routed in a worker thread and its reply ENQUEUED (dedupe key "telegram:{update_id}"),
in both modes; the outbox worker delivers it with `TelegramSender`. Only answerCallbackQuery is called inline.
"""

import asyncio
import logging
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

from telegram import Update
from telegram.constants import ChatType, UpdateType
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationBuilder, CallbackQueryHandler, ContextTypes, MessageHandler, filters

from bot.channels.telegram import CHANNEL
from bot.channels.telegram.render import option_number
from bot.channels.telegram.sender import TelegramSender, api_urls, make_bot
from core.database import session_scope
from core.messages import IncomingMessage, Reply
from core.outbox.senders import Sender
from core.outbox.service import enqueue
from core.outbox.worker import OutboxWorker
from core.settings import get_settings
from handlers.router import Router

log = logging.getLogger(__name__)

MENU_TEXT = "菜单"  # what /start and /help are routed as: the router answers it with the main menu
MEDIA_REPLY = Reply(
    text="抱歉，我暂时无法识别图片、贴纸、文件或语音。请直接用文字输入您的问题，或发送发票号码，我来帮您查询。",
    intent="fallback",
)
EXPIRED_BUTTON = "该按钮已失效，请直接输入您的问题。"
ALLOWED_UPDATES = [UpdateType.MESSAGE, UpdateType.CALLBACK_QUERY]
MENU_COMMANDS = filters.Regex(r"^/(start|help|menu)(@\w+)?(\s|$)")
WORKER_KEY = "outbox_worker"
ROUTER_KEY = "message_router"

# Errors raised by handlers while `process` runs (the error handler appends them; same task, so same context).
_failures: ContextVar[list[BaseException] | None] = ContextVar("telegram_handler_failures", default=None)


# --- Update → action, no network -------------------------------------------------------------------------------


def private_chat_id(update: Update) -> int | None:
    """The private chat an update came from; None for groups, channels and inline messages."""
    chat = update.effective_chat
    return chat.id if chat is not None and chat.type == ChatType.PRIVATE else None


def incoming(update: Update, text: str) -> IncomingMessage:
    """The router's view of an update from a private chat (user id = chat id)."""
    source = update.callback_query.id if update.callback_query else update.effective_message.message_id
    return IncomingMessage(channel=CHANNEL, user_id=str(private_chat_id(update)), text=text, message_id=str(source))


def choice_text(update: Update) -> str | None:
    """What a button press stands for: the option's number as the merchant would type it ("opt:2" → "2")."""
    number = option_number(update.callback_query.data if update.callback_query else None)
    return None if number is None or private_chat_id(update) is None else str(number)


def dedupe_key(update: Update) -> str:
    """Outbox dedupe key of the reply to an update."""
    return f"{CHANNEL}:{update.update_id}"


def answer(router: Router, message: IncomingMessage, *, key: str) -> int | None:
    """Route a message and enqueue the reply in the same transaction; return the outbox row id, None when the
    reply is silent (blocking)."""
    with session_scope() as db_session:
        reply = router.handle(message, db_session=db_session)
        return _enqueue(db_session, message.user_id, reply, key)


def notify(chat_id: int, reply: Reply, *, key: str) -> int | None:
    """Enqueue a fixed reply without routing; return the outbox row id (blocking)."""
    with session_scope() as db_session:
        return _enqueue(db_session, str(chat_id), reply, key)


def _enqueue(db_session, recipient: str, reply: Reply, key: str) -> int | None:
    if reply.silent:  # a person is handling the conversation: nothing to send
        return None
    row = enqueue(
        db_session=db_session,
        channel=CHANNEL,
        recipient=recipient,
        text=reply.text,
        options=reply.options,
        dedupe_key=key,
    )
    return row.id


# --- PTB callbacks ---------------------------------------------------------------------------------------------


async def on_menu(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/start, /help: the main menu."""
    await _route(update, context, MENU_TEXT)


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A text message: the router's answer."""
    await _route(update, context, update.effective_message.text)


async def on_choice(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A button press: stop the spinner, then act as if the option's number was typed."""
    text = choice_text(update)
    try:
        await update.callback_query.answer(None if text else EXPIRED_BUTTON)
    except TelegramError as exc:
        log.warning("answerCallbackQuery failed for update %s: %s", update.update_id, exc)
    if text:
        await _route(update, context, text)


async def on_media(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo, sticker, file, voice…: ask for text instead."""
    await asyncio.to_thread(notify, private_chat_id(update), MEDIA_REPLY, key=dedupe_key(update))
    _wake_worker(context)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log a handler's error and let `process` know the update failed."""
    update_id = update.update_id if isinstance(update, Update) else None
    log.error("telegram update %s failed", update_id, exc_info=context.error)
    failures = _failures.get()
    if failures is not None and context.error is not None:
        failures.append(context.error)


async def _route(update: Update, context: ContextTypes.DEFAULT_TYPE, text: str) -> None:
    router = context.application.bot_data[ROUTER_KEY]
    await asyncio.to_thread(answer, router, incoming(update, text), key=dedupe_key(update))
    _wake_worker(context)


def _wake_worker(context: ContextTypes.DEFAULT_TYPE) -> None:
    """In polling mode, have the in-process outbox worker deliver at once."""
    worker = context.application.bot_data.get(WORKER_KEY)
    if worker is not None:
        worker.wake()


def add_handlers(application: Application) -> None:
    """Register every handler: private chats only; edited messages and other update types are ignored."""
    private = filters.UpdateType.MESSAGE & filters.ChatType.PRIVATE
    application.add_handler(MessageHandler(private & MENU_COMMANDS, on_menu))
    application.add_handler(MessageHandler(private & filters.TEXT, on_text))
    application.add_handler(MessageHandler(private & filters.ATTACHMENT, on_media))
    application.add_handler(CallbackQueryHandler(on_choice))
    application.add_error_handler(on_error)


# --- Application, webhook processing, polling, setWebhook ------------------------------------------------------


def build_application(
    *, router: Router, token: str | None = None, api_base: str | None = None, polling: bool = False
) -> Application:
    """The PTB Application with our handlers answering through `router`; without an Updater unless for polling."""
    settings = get_settings()
    token = token or settings.telegram_bot_token
    if not token:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    base_url, base_file_url = api_urls(api_base or settings.telegram_api_base)
    builder = ApplicationBuilder().token(token).base_url(base_url).base_file_url(base_file_url)
    if not polling:
        builder = builder.updater(None)
    application = builder.build()
    application.bot_data[ROUTER_KEY] = router
    add_handlers(application)
    return application


async def process(application: Application, update: Update) -> bool:
    """Run the handlers on one update; False when one of them failed (already logged)."""
    failures: list[BaseException] = []
    token = _failures.set(failures)
    try:
        await application.process_update(update)
    finally:
        _failures.reset(token)
    return not failures


def run_polling(
    *,
    router: Router,
    application: Application | None = None,
    senders: Mapping[str, Sender] | None = None,
    deliver: bool = True,
    **options: Any,
) -> None:
    """Local use without a public URL: long-poll getUpdates (this deletes any webhook) and handle updates exactly as
    the webhook does (route + enqueue). With `deliver`, an in-process outbox worker sends the replies through
    `senders` (default: a TelegramSender only; the worker leaves other channels' messages to a worker that can send
    them). `options` go to `Application.run_polling`."""
    application = application or build_application(router=router, polling=True)
    own_sender = None
    worker = None
    if deliver:
        if senders is None:
            own_sender = TelegramSender()
            senders = {CHANNEL: own_sender}
        worker = OutboxWorker(senders)
        application.bot_data[WORKER_KEY] = worker
        worker.start()
    try:
        application.run_polling(allowed_updates=ALLOWED_UPDATES, **options)
    finally:
        if worker is not None:
            worker.stop()
        if own_sender is not None:
            own_sender.close()


def set_webhook(url: str, *, token: str | None = None, api_base: str | None = None) -> bool:
    """Point Telegram at our webhook URL with the secret token; run once per deployment, not per worker."""
    settings = get_settings()
    if not settings.telegram_secret_token:
        raise ValueError("TELEGRAM_SECRET_TOKEN is not set")
    token = token or settings.telegram_bot_token
    if not token:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")

    async def call() -> bool:
        async with make_bot(token=token, api_base=api_base or settings.telegram_api_base, rate_limited=False) as bot:
            return await bot.set_webhook(
                url, secret_token=settings.telegram_secret_token, allowed_updates=ALLOWED_UPDATES
            )

    return asyncio.run(call())
