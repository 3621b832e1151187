"""Bring a database and the process up to date: schema, shipped FAQ, router."""

import logging
from functools import lru_cache

from bot.background import BatchWorker
from bot.config import get_settings
from bot.database import get_engine, session_scope, upgrade_schema
from bot.invoices.backend import InvoiceBackend
from bot.invoices.sql_backend import SqlInvoiceBackend
from bot.outbox.senders import Sender
from bot.router import Router
from bot.store import Store, get_store
from knowledge import service as knowledge_service
from knowledge.live import get_live_knowledge

log = logging.getLogger(__name__)


def prepare_database() -> None:
    """Migrate the schema when it is behind and load the shipped FAQ into an empty table."""
    if upgrade_schema(get_engine()):
        log.info("database schema upgraded")
    with session_scope() as db_session:
        added = knowledge_service.seed_defaults(db_session=db_session)
    if added:
        log.info("loaded %d FAQ entries", added)


def warm_knowledge() -> None:
    """Build the FAQ snapshot and its matcher now rather than on the first message."""
    with session_scope() as db_session:
        get_live_knowledge().current(db_session=db_session)


def make_router(*, store: Store | None = None, record: bool = True) -> Router:
    """A router wired to the configured store and the live knowledge base."""
    settings = get_settings()
    return Router(
        store=store or get_store(),
        knowledge=get_live_knowledge(),
        session_ttl=settings.session_ttl_seconds,
        record=record,
        max_chars=settings.max_message_chars,
        invoices=get_invoice_backend(),
        rate_limit=settings.inbound_messages_per_minute,
        incident_topics=settings.incident_topics,
    )


def make_senders() -> dict[str, Sender]:
    """A sender for every channel whose credentials are configured."""
    settings = get_settings()
    senders: dict[str, Sender] = {}
    if settings.wechat_app_id and settings.wechat_app_secret:
        from bot.channels.wechat.client import WeChatSender

        senders["wechat"] = WeChatSender()
    if settings.telegram_bot_token:
        from bot.channels.telegram.sender import TelegramSender

        senders["telegram"] = TelegramSender()
    if settings.sla_alert_webhook_url:
        from ticketing.webhook import WEBHOOK_CHANNEL, WebhookSender

        senders[WEBHOOK_CHANNEL] = WebhookSender()
    return senders


def close_senders(senders: dict[str, Sender]) -> None:
    """Release what senders hold (event loops, HTTP sessions)."""
    for sender in senders.values():
        close = getattr(sender, "close", None)
        if close is not None:
            close()


def make_workers(senders: dict[str, Sender]) -> list[BatchWorker]:
    """The background workers a process runs: outbox delivery (for the configured channels), invoice watches and
    ticket housekeeping (SLA checks, auto-assignment, idle tickets) and incident detection."""
    from bot.invoices.worker import WatchWorker
    from bot.outbox.worker import OutboxWorker
    from ticketing.flows import TicketingWorker
    from ticketing.incidents import IncidentWorker

    workers: list[BatchWorker] = [WatchWorker(get_invoice_backend()), TicketingWorker(), IncidentWorker()]
    if senders:
        workers.insert(0, OutboxWorker(senders))
    return workers


@lru_cache
def get_invoice_backend() -> InvoiceBackend:
    """The configured invoice backend: our own table ("sql") or the merchant platform's API ("http")."""
    settings = get_settings()
    if settings.invoice_backend == "http":
        from bot.invoices.http_backend import HttpInvoiceBackend

        return HttpInvoiceBackend.from_settings(get_store())
    if settings.invoice_backend != "sql":
        raise ValueError(f"INVOICE_BACKEND must be sql or http, not {settings.invoice_backend!r}")
    return SqlInvoiceBackend()


@lru_cache
def get_router() -> Router:
    """The process-wide router."""
    return make_router()
