"""Bring a database and the process up to date (schema, shipped FAQ) and build what the app runs: the message
router, the outbound senders and the background workers."""

import logging

from bot.channels.telegram.sender import TelegramSender
from bot.channels.wechat.sender import WeChatSender
from core.background import BatchWorker
from core.database import get_engine, session_scope, upgrade_schema
from core.outbox.senders import Sender
from core.outbox.worker import OutboxWorker
from core.settings import get_settings
from invoices.factory import get_invoice_backend
from invoices.worker import WatchWorker
from knowledge import service as knowledge_service
from knowledge.live import get_live_knowledge
from ticketing.flows import TicketingWorker
from ticketing.incidents import IncidentWorker
from ticketing.webhook import WEBHOOK_CHANNEL, WebhookSender

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


def make_senders() -> dict[str, Sender]:
    """A sender for every channel whose credentials are configured."""
    settings = get_settings()
    senders: dict[str, Sender] = {}
    if settings.wechat_app_id and settings.wechat_app_secret:
        senders["wechat"] = WeChatSender()
    if settings.telegram_bot_token:
        senders["telegram"] = TelegramSender()
    if settings.sla_alert_webhook_url:
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
    workers: list[BatchWorker] = [WatchWorker(get_invoice_backend()), TicketingWorker(), IncidentWorker()]
    if senders:
        workers.insert(0, OutboxWorker(senders))
    return workers
