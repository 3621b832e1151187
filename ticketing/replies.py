"""Agent replies to merchants through the outbox, canned replies with variables, and the CSAT rating."""

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.clock import utc
from core.outbox.models import OutboxMessage
from merchants.models import Merchant
from ticketing import assignment, lifecycle, service
from ticketing.calendar import calendar_from_settings
from ticketing.models import (
    ACTIVE,
    AGENT,
    ASSIGNED,
    CLOSED,
    PRIORITY_LABELS,
    RESOLVED,
    ROLE_ADMIN,
    STATE_LABELS,
    WAITING,
    CannedReply,
    StaffUser,
    Ticket,
    TicketMessage,
)
from ticketing.service import TicketError

VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
VARIABLES = ("merchant_name", "ticket_number", "agent_name", "subject", "category", "priority", "business_hours")
CSAT_SCORE = re.compile(r"^([1-5一二三四五])(?:\s*[分星])?(?:$|[\s,，。.!！:：、]+(.*)$)", re.DOTALL)
CHINESE_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5}
CSAT_THANKS = "感谢您的评价！我们会继续努力。"
# {merchant_name} of a merchant not bound to a chat: 客户 after a form of address ("尊敬的客户"), nothing next to
# a 您 already there ("{merchant_name}您好" and "您好 {merchant_name}，" read 您好), else 您 ("您的发票").
UNBOUND_ADDRESSED = re.compile(r"(尊敬的|亲爱的)\s*\{merchant_name\}")
UNBOUND_BESIDE_YOU = re.compile(
    r"\{merchant_name\}[\s,，、:：]*(?=您)|(?:(?<=您)|(?<=您好))[\s,，、]*\{merchant_name\}"
)
UNBOUND_NAME = "您"
MAX_CANNED_TITLE_CHARS = 100


class ReplyError(TicketError):
    """A reply cannot be sent, or a canned reply or rating not stored; the message (Chinese) is for the console."""


class WindowClosed(ReplyError):
    """WeChat allows 客服 messages only within 48 hours of the merchant's last message; nothing was queued."""


# --- agent replies -------------------------------------------------------------------------------------------


def send(
    *,
    db_session: Session,
    ticket_id: int,
    agent_id: int,
    text: str,
    wait_for_merchant: bool = False,
    now: datetime | None = None,
) -> TicketMessage:
    """Send an agent's reply: a transcript line plus an outbox message to the ticket's channel and user. An unassigned
    ticket is taken by the agent first; the first reply stops the first-response clock; `wait_for_merchant` then
    pauses the SLA clocks. WindowClosed (nothing queued) when WeChat's 48-hour window has closed."""
    now = utc(now)
    agent = db_session.get(StaffUser, agent_id)
    if agent is None or not agent.active:
        raise ReplyError("客服账号不存在或已停用")
    body = service.clean_text(text)
    ticket = service.lock(db_session=db_session, ticket_id=ticket_id)
    if ticket.state not in ACTIVE:
        raise ReplyError(f"工单 {ticket.number} {STATE_LABELS[ticket.state]}，请先重新打开再回复")
    if ticket.assignee_id not in (None, agent_id) and agent.role != ROLE_ADMIN:
        raise ReplyError(f"工单 {ticket.number} 已分配给其他客服")
    window = lifecycle.reply_window(ticket, now)
    if not window.open:
        raise WindowClosed(window.notice or lifecycle.WINDOW_CLOSED_NOTICE)
    if ticket.assignee_id is None:
        ticket = assignment.take(
            db_session=db_session, ticket_id=ticket.id, agent_id=agent_id, force=agent.role == ROLE_ADMIN, now=now
        )
    message = lifecycle.notify_merchant(
        db_session=db_session, ticket=ticket, text=body, kind=AGENT, author_id=agent_id, now=now
    )
    if message is None:  # cannot happen after the window check; kept so a race never loses the reply silently
        raise WindowClosed(lifecycle.WINDOW_CLOSED_NOTICE)
    lifecycle.mark_agent_message(ticket, now)
    if wait_for_merchant and ticket.state == ASSIGNED:
        lifecycle.apply_transition(db_session, ticket, WAITING, now=now, actor_id=agent_id, reason="reply")
    service.record_event(
        db_session=db_session,
        ticket_id=ticket.id,
        actor_id=agent_id,
        action="reply",
        after={"message_id": message.id, "outbox_message_id": message.outbox_message_id},
        now=now,
    )
    db_session.flush()
    return message


@dataclass(frozen=True)
class Delivery:
    """Where an agent reply or notice stands in the outbox."""

    status: str  # pending, sending, sent or failed
    attempts: int
    error: str | None
    sent_at: datetime | None


def deliveries(*, db_session: Session, ticket_id: int) -> dict[int, Delivery]:
    """The outbox state of each of a ticket's transcript lines that went to the merchant, by transcript line id."""
    query = (
        select(TicketMessage.id, OutboxMessage)
        .join(OutboxMessage, OutboxMessage.id == TicketMessage.outbox_message_id)
        .where(TicketMessage.ticket_id == ticket_id)
        .execution_options(populate_existing=True)
    )
    return {
        message_id: Delivery(
            outbox.status, outbox.attempts, outbox.last_error, utc(outbox.sent_at) if outbox.sent_at else None
        )
        for message_id, outbox in db_session.execute(query)
    }


def delivery(*, db_session: Session, message_id: int) -> Delivery | None:
    """The outbox state of one transcript line (None when it was never queued)."""
    message = db_session.get(TicketMessage, message_id)
    if message is None or message.outbox_message_id is None:
        return None
    return deliveries(db_session=db_session, ticket_id=message.ticket_id).get(message_id)


# --- canned replies ------------------------------------------------------------------------------------------


def render_template(body: str, variables: Mapping[str, object]) -> str:
    """Fill {name} placeholders from `variables`; unknown ones stay visible as written and stray braces are kept.
    (A regex rather than str.format_map: "{0}", "{a.b}" or a lone "{" in a body never raise or reach attributes.)"""
    return VARIABLE.sub(lambda m: str(variables[m.group(1)]) if m.group(1) in variables else m.group(0), body)


def unknown_variables(body: str) -> list[str]:
    """Placeholders in a body that no ticket fills, for the console to warn about."""
    return sorted({name for name in VARIABLE.findall(body) if name not in VARIABLES})


def address_unbound(body: str) -> str:
    """A body with {merchant_name} filled for a merchant without a name: never "您您好" or "您好 您"."""
    body = UNBOUND_ADDRESSED.sub(r"\1客户", body)
    return UNBOUND_BESIDE_YOU.sub("", body).replace("{merchant_name}", UNBOUND_NAME)


def variables_for(*, db_session: Session, ticket: Ticket, agent: StaffUser | None) -> dict[str, str]:
    """The values canned replies can use for a ticket and agent (no merchant_name for an unbound merchant)."""
    merchant = db_session.get(Merchant, ticket.merchant_id) if ticket.merchant_id else None
    names = {"merchant_name": merchant.name} if merchant is not None else {}
    return {
        **names,
        "ticket_number": ticket.number,
        "agent_name": agent.display_name if agent is not None else "客服",
        "subject": ticket.subject or "",
        "category": ticket.category,
        "priority": PRIORITY_LABELS.get(ticket.priority, ticket.priority),
        "business_hours": calendar_from_settings().describe_hours(),
    }


def _canned_values(title: str, body: str) -> tuple[str, str]:
    title = " ".join(title.split())[:MAX_CANNED_TITLE_CHARS]
    if not title:
        raise ReplyError("快捷回复标题不能为空")
    return title, service.clean_text(body)


def _title_taken(db_session: Session, title: str, except_id: int | None = None) -> bool:
    query = select(CannedReply.id).where(CannedReply.title == title)
    return any(found != except_id for found in db_session.scalars(query))


def create_canned(
    *, db_session: Session, title: str, body: str, actor_id: int | None = None, now: datetime | None = None
) -> CannedReply:
    """Add a canned reply (ReplyError when the title is taken)."""
    now = utc(now)
    title, body = _canned_values(title, body)
    if _title_taken(db_session, title):
        raise ReplyError(f"快捷回复「{title}」已存在")
    canned = CannedReply(title=title, body=body, created_by=actor_id, created_at=now, updated_at=now)
    db_session.add(canned)
    db_session.flush()
    service.record_event(
        db_session=db_session, actor_id=actor_id, action="canned_created", after={"canned_id": canned.id}, now=now
    )
    return canned


def update_canned(
    *,
    db_session: Session,
    canned_id: int,
    title: str | None = None,
    body: str | None = None,
    actor_id: int | None = None,
    now: datetime | None = None,
) -> CannedReply:
    """Change a canned reply's title and/or body."""
    now = utc(now)
    canned = get_canned(db_session=db_session, canned_id=canned_id)
    if canned is None:
        raise ReplyError("快捷回复不存在")
    new_title, new_body = _canned_values(title if title is not None else canned.title, body or canned.body)
    if _title_taken(db_session, new_title, except_id=canned.id):
        raise ReplyError(f"快捷回复「{new_title}」已存在")
    canned.title, canned.body, canned.updated_at = new_title, new_body, now
    service.record_event(
        db_session=db_session, actor_id=actor_id, action="canned_updated", after={"canned_id": canned.id}, now=now
    )
    db_session.flush()
    return canned


def delete_canned(*, db_session: Session, canned_id: int, actor_id: int | None = None) -> bool:
    """Remove a canned reply; False when there was none."""
    canned = get_canned(db_session=db_session, canned_id=canned_id)
    if canned is None:
        return False
    db_session.delete(canned)
    service.record_event(
        db_session=db_session, actor_id=actor_id, action="canned_deleted", after={"canned_id": canned_id}
    )
    db_session.flush()
    return True


def get_canned(*, db_session: Session, canned_id: int) -> CannedReply | None:
    """One canned reply."""
    return db_session.get(CannedReply, canned_id)


def list_canned(*, db_session: Session, search: str | None = None) -> list[CannedReply]:
    """Canned replies by title, optionally those whose title or body contains `search`."""
    query = select(CannedReply).order_by(CannedReply.title)
    if search and search.strip():
        needle = search.strip()
        query = query.where(
            CannedReply.title.contains(needle, autoescape=True) | CannedReply.body.contains(needle, autoescape=True)
        )
    return list(db_session.scalars(query))


def render_canned(*, db_session: Session, canned_id: int, ticket_id: int, agent_id: int | None) -> str:
    """A canned reply's body filled in for a ticket and agent (the console puts it in the reply box)."""
    canned = get_canned(db_session=db_session, canned_id=canned_id)
    if canned is None:
        raise ReplyError("快捷回复不存在")
    return _fill(canned.body, _ticket_variables(db_session, ticket_id, agent_id))


def render_all_canned(*, db_session: Session, ticket_id: int, agent_id: int | None) -> list[tuple[CannedReply, str]]:
    """Every canned reply with its body filled in for a ticket and agent (the console inserts them in the page)."""
    variables = _ticket_variables(db_session, ticket_id, agent_id)
    return [(canned, _fill(canned.body, variables)) for canned in list_canned(db_session=db_session)]


def _ticket_variables(db_session: Session, ticket_id: int, agent_id: int | None) -> dict[str, str]:
    ticket = service.require(db_session=db_session, ticket_id=ticket_id)
    agent = db_session.get(StaffUser, agent_id) if agent_id is not None else None
    return variables_for(db_session=db_session, ticket=ticket, agent=agent)


def _fill(body: str, variables: Mapping[str, str]) -> str:
    return render_template(body if "merchant_name" in variables else address_unbound(body), variables)


# --- CSAT ----------------------------------------------------------------------------------------------------


def parse_csat(text: str) -> tuple[int, str | None] | None:
    """A rating reply ("5", "５分", "4 还行", "五星") as (score, comment or None); None when it is not one."""
    match = CSAT_SCORE.match(unicodedata.normalize("NFKC", text).strip())
    if match is None:
        return None
    raw, comment = match.group(1), (match.group(2) or "").strip()
    return CHINESE_DIGITS.get(raw) or int(raw), comment or None


def record_csat(
    *,
    db_session: Session,
    ticket_id: int,
    score: int,
    comment: str | None = None,
    now: datetime | None = None,
) -> Ticket:
    """Store the merchant's 1–5 rating of a resolved (or since closed) ticket; a later rating replaces it."""
    if not isinstance(score, int) or not 1 <= score <= 5:
        raise ReplyError("评分须为 1-5 的整数")
    now = utc(now)
    ticket = service.lock(db_session=db_session, ticket_id=ticket_id)
    if ticket.state not in (RESOLVED, CLOSED):
        raise ReplyError(f"工单 {ticket.number} 尚未解决，不能评分")
    before = {"score": ticket.csat_score}
    ticket.csat_score = score
    ticket.csat_comment = service.clean_text(comment) if comment and comment.strip() else None
    ticket.csat_at = now
    service.record_event(
        db_session=db_session,
        ticket_id=ticket.id,
        action="csat",
        before=before,
        after={"score": score, "comment": ticket.csat_comment},
        now=now,
    )
    db_session.flush()
    return ticket


@dataclass(frozen=True)
class CsatSummary:
    """How merchants rated resolved tickets."""

    count: int
    average: float | None
    distribution: dict[int, int]


def csat_summary(*, db_session: Session, since: datetime | None = None, agent_id: int | None = None) -> CsatSummary:
    """Ratings received (since a moment, for one agent's tickets): count, average and how many of each score."""
    query = select(Ticket.csat_score, func.count(Ticket.id)).where(Ticket.csat_score.is_not(None))
    if since is not None:
        query = query.where(Ticket.csat_at >= utc(since))
    if agent_id is not None:
        query = query.where(Ticket.assignee_id == agent_id)
    distribution = dict.fromkeys(range(1, 6), 0)
    distribution.update({score: n for score, n in db_session.execute(query.group_by(Ticket.csat_score))})
    count = sum(distribution.values())
    average = sum(score * n for score, n in distribution.items()) / count if count else None
    return CsatSummary(count, average, distribution)
