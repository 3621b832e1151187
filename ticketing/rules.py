"""How urgent a ticket is and what it is about, from the merchant's words, the FAQ topic and the invoice."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from core.settings import get_settings
from knowledge.models import FaqEntry
from ticketing.calendar import BusinessCalendar, calendar_from_settings
from ticketing.models import COMPLAINT, GENERAL, HIGH, INVOICE, NORMAL, PRIORITIES, URGENT

COMPLAINT_WORDS = ("投诉",)
FAILED_INVOICE_STATUSES = frozenset({"failed"})  # 开具失败


@dataclass(frozen=True)
class Classification:
    """A ticket's priority and category, and the rule that chose them."""

    priority: str
    category: str
    rule: str


def category_for_topic(*, db_session: Session, topic: str | None) -> str | None:
    """The FAQ category of a topic id (None when the topic is unknown)."""
    if not topic:
        return None
    entry = db_session.get(FaqEntry, topic)
    return entry.category if entry is not None else None


def is_complaint(text: str) -> bool:
    """Whether the merchant's words are a complaint (投诉)."""
    return any(word in text for word in COMPLAINT_WORDS)


def classify(
    *,
    texts: Iterable[str],
    category: str | None = None,
    invoice_status: str | None = None,
    now: datetime,
    calendar: BusinessCalendar | None = None,
) -> Classification:
    """Complaints are urgent; invoice-issuing failures are urgent in business hours and high outside them;
    everything else is normal."""
    if any(is_complaint(text) for text in texts):
        return Classification(URGENT, COMPLAINT, "complaint")
    failure_categories = set(get_settings().ticket_issue_failure_categories)
    if category in failure_categories or invoice_status in FAILED_INVOICE_STATUSES:
        calendar = calendar or calendar_from_settings()
        in_hours = calendar.is_open(now)
        rule = "issue_failure_in_hours" if in_hours else "issue_failure_off_hours"
        return Classification(URGENT if in_hours else HIGH, category or INVOICE, rule)
    return Classification(NORMAL, category or (INVOICE if invoice_status else GENERAL), "default")


def more_urgent(first: str, second: str) -> str:
    """The more urgent of two priorities."""
    return min(first, second, key=PRIORITIES.index)
