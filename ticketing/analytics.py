"""Support analytics per day (in TICKET_TIMEZONE) over conversation turns and tickets.

Definitions, for each local day:
  conversations      distinct chat identities (channel + user) with at least one recorded turn that day
  handed off         those of them with a "handoff" or "human" turn that day, or a ticket created that day
  bot resolved       those that ended on an answer or a finished guide (its fix shown, or closed as solved), greetings,
                     small talk and throttled turns aside, with no fallback, out_of_scope, not-helped or handoff
                     turn and no ticket that day
  with fallback      those with at least one fallback turn (the bot did not understand; "没解决" records aside)
  out of scope       those with at least one out_of_scope turn
  not helped         those with a question the merchant said was not solved ("没解决", "还是不行" with nothing left)
  first response     tickets whose first agent reply was that day: reply time - start (creation or latest reopen)
  resolution         tickets resolved that day: resolve time - start (creation or latest reopen)
  SLA breaches       first-response and resolution breaches recorded that day (each counts)
  CSAT               ratings received that day: how many and their average
Rates are shares of the day's conversations. Top topics count answered turns ("answer" and "guide") per FAQ topic
over the whole period; top unanswered are the largest clusters of knowledge.unanswered over the period. Times are
wall-clock seconds.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from statistics import median
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from core.clock import utc
from core.conversation import outcomes
from core.conversation.models import ConversationTurn
from core.settings import get_settings
from knowledge import unanswered
from ticketing.models import Ticket

HANDED_INTENTS = frozenset({"handoff", "human"})
ANSWERED_INTENTS = ("answer", "guide")
ASIDE_INTENTS = frozenset({"greeting", "smalltalk", "throttled"})  # not what a conversation ends on
FALLBACK, OUT_OF_SCOPE = "fallback", "out_of_scope"


@dataclass
class DayStats:
    """One day's (or the whole period's) numbers."""

    day: date | None
    conversations: int = 0
    handed_off: int = 0
    bot_resolved: int = 0
    with_fallback: int = 0
    out_of_scope: int = 0
    not_helped: int = 0
    first_response_seconds: list[float] = field(default_factory=list, repr=False)
    resolution_seconds: list[float] = field(default_factory=list, repr=False)
    sla_breaches: int = 0
    csat_scores: list[int] = field(default_factory=list, repr=False)

    def _share(self, count: int) -> float | None:
        return count / self.conversations if self.conversations else None

    @property
    def bot_resolved_rate(self) -> float | None:
        """Share of conversations the bot resolved alone (None without conversations)."""
        return self._share(self.bot_resolved)

    @property
    def handoff_rate(self) -> float | None:
        """Share of conversations handed to people."""
        return self._share(self.handed_off)

    @property
    def fallback_rate(self) -> float | None:
        """Share of conversations with at least one fallback turn."""
        return self._share(self.with_fallback)

    @property
    def out_of_scope_rate(self) -> float | None:
        """Share of conversations with at least one out_of_scope turn."""
        return self._share(self.out_of_scope)

    @property
    def not_helped_rate(self) -> float | None:
        """Share of conversations with a question the merchant said was not solved."""
        return self._share(self.not_helped)

    @property
    def first_responses(self) -> int:
        """How many first responses were made."""
        return len(self.first_response_seconds)

    @property
    def median_first_response_seconds(self) -> float | None:
        """Median time to the first agent reply."""
        return median(self.first_response_seconds) if self.first_response_seconds else None

    @property
    def resolutions(self) -> int:
        """How many tickets were resolved."""
        return len(self.resolution_seconds)

    @property
    def median_resolution_seconds(self) -> float | None:
        """Median time to resolution."""
        return median(self.resolution_seconds) if self.resolution_seconds else None

    @property
    def csat_count(self) -> int:
        """How many ratings were received."""
        return len(self.csat_scores)

    @property
    def csat_average(self) -> float | None:
        """Average rating (1-5)."""
        return sum(self.csat_scores) / len(self.csat_scores) if self.csat_scores else None


@dataclass
class Report:
    """Per-day series, period totals, top topics and top unanswered questions."""

    start: date
    end: date
    days: list[DayStats]
    total: DayStats
    top_topics: list[tuple[str, int]]
    top_unanswered: list[unanswered.Cluster]


def day_bounds(*, days: int, now: datetime, tz: ZoneInfo) -> tuple[date, date, datetime]:
    """The first and last local day of a period of `days` ending today, and the first day's start in UTC."""
    end = utc(now).astimezone(tz).date()
    start = end - timedelta(days=days - 1)
    return start, end, datetime.combine(start, time(0), tz).astimezone(UTC)


def report(*, db_session: Session, days: int | None = None, now: datetime | None = None, top: int = 10) -> Report:
    """The analytics of the last `days` local days (ANALYTICS_DAYS), today included."""
    settings = get_settings()
    now = utc(now)
    days = max(1, settings.analytics_days if days is None else days)
    tz = ZoneInfo(settings.ticket_timezone)
    start, end, since = day_bounds(days=days, now=now, tz=tz)
    series = {start + timedelta(days=i): DayStats(start + timedelta(days=i)) for i in range(days)}

    def bucket(moment: datetime | None) -> DayStats | None:
        return None if moment is None else series.get(utc(moment).astimezone(tz).date())

    _conversations(db_session, since, now, bucket, series)
    _tickets(db_session, since, now, bucket)
    total = DayStats(None)
    for stats in series.values():
        total.conversations += stats.conversations
        total.handed_off += stats.handed_off
        total.bot_resolved += stats.bot_resolved
        total.with_fallback += stats.with_fallback
        total.out_of_scope += stats.out_of_scope
        total.not_helped += stats.not_helped
        total.first_response_seconds += stats.first_response_seconds
        total.resolution_seconds += stats.resolution_seconds
        total.sla_breaches += stats.sla_breaches
        total.csat_scores += stats.csat_scores
    clusters = unanswered.cluster(unanswered.find_turns(db_session=db_session, since=since, now=now))
    topics = top_topics(db_session=db_session, since=since, limit=top)
    return Report(start, end, list(series.values()), total, topics, clusters[:top])


@dataclass
class _Conversation:
    """What one identity's turns of one day showed."""

    handed: bool = False
    fallback: bool = False
    out_of_scope: bool = False
    not_helped: bool = False
    ended_resolved: bool = False  # the last turn (greetings and small talk aside) was an answer or a finished guide

    @property
    def resolved(self) -> bool:
        """Ended on an answer or a finished guide, with nothing that says the bot did not manage alone."""
        return self.ended_resolved and not (self.handed or self.fallback or self.out_of_scope or self.not_helped)


def _conversations(db_session: Session, since: datetime, now: datetime, bucket, series: dict) -> None:
    t = ConversationTurn
    seen: dict[date, dict[tuple[str, str], _Conversation]] = {}
    # The reply text is read only where it tells more than the intent: a guide's end, a not-helped record.
    told = case((t.intent.in_(("guide", FALLBACK)), t.reply), else_=None)
    query = (
        select(t.channel, t.user_id, t.intent, told, t.created_at)
        .where(t.created_at >= since, t.created_at <= now)
        .order_by(t.created_at, t.id)
    )
    for channel, user_id, intent, reply, created_at in db_session.execute(query):
        stats = bucket(created_at)
        if stats is None:
            continue
        conversation = seen.setdefault(stats.day, {}).setdefault((channel, user_id), _Conversation())
        if intent in HANDED_INTENTS:
            conversation.handed = True
        elif intent == FALLBACK:
            if outcomes.is_not_helped(reply or ""):
                conversation.not_helped = True
            else:
                conversation.fallback = True
        elif intent == OUT_OF_SCOPE:
            conversation.out_of_scope = True
        if intent not in ASIDE_INTENTS:
            finished = intent == "guide" and outcomes.is_finished_guide(reply or "")
            conversation.ended_resolved = intent == "answer" or finished
    tickets = select(Ticket.channel, Ticket.user_id, Ticket.created_at).where(
        Ticket.created_at >= since, Ticket.created_at <= now
    )
    for channel, user_id, created_at in db_session.execute(tickets):
        stats = bucket(created_at)
        conversation = seen.get(stats.day, {}).get((channel, user_id)) if stats is not None else None
        if conversation is not None:
            conversation.handed = True
    for day, stats in series.items():
        conversations = list(seen.get(day, {}).values())
        stats.conversations = len(conversations)
        stats.handed_off = sum(c.handed for c in conversations)
        stats.bot_resolved = sum(c.resolved for c in conversations)
        stats.with_fallback = sum(c.fallback for c in conversations)
        stats.out_of_scope = sum(c.out_of_scope for c in conversations)
        stats.not_helped = sum(c.not_helped for c in conversations)


def _tickets(db_session: Session, since: datetime, now: datetime, bucket) -> None:
    def within(column):
        return column.between(since, now)

    query = select(Ticket).where(
        within(Ticket.first_response_at)
        | within(Ticket.resolved_at)
        | within(Ticket.sla_first_response_breached_at)
        | within(Ticket.sla_resolution_breached_at)
        | within(Ticket.csat_at)
    )
    for ticket in db_session.scalars(query):
        started = utc(ticket.sla_started_at or ticket.created_at)
        stats = bucket(ticket.first_response_at) if _in(ticket.first_response_at, since, now) else None
        if stats is not None:
            stats.first_response_seconds.append((utc(ticket.first_response_at) - started).total_seconds())
        stats = bucket(ticket.resolved_at) if _in(ticket.resolved_at, since, now) else None
        if stats is not None:
            stats.resolution_seconds.append((utc(ticket.resolved_at) - started).total_seconds())
        for breached in (ticket.sla_first_response_breached_at, ticket.sla_resolution_breached_at):
            stats = bucket(breached) if _in(breached, since, now) else None
            if stats is not None:
                stats.sla_breaches += 1
        stats = bucket(ticket.csat_at) if _in(ticket.csat_at, since, now) else None
        if stats is not None and ticket.csat_score is not None:
            stats.csat_scores.append(ticket.csat_score)


def _in(moment: datetime | None, since: datetime, now: datetime) -> bool:
    return moment is not None and since <= utc(moment) <= now


def top_topics(*, db_session: Session, since: datetime, limit: int = 10) -> list[tuple[str, int]]:
    """FAQ topics answered most often since a moment, with how many turns."""
    t = ConversationTurn
    count = func.count(t.id)
    query = (
        select(t.topic, count)
        .where(t.created_at >= since, t.topic.is_not(None), t.intent.in_(ANSWERED_INTENTS))
        .group_by(t.topic)
        .order_by(count.desc(), t.topic)
        .limit(limit)
    )
    return [(topic, n) for topic, n in db_session.execute(query)]
