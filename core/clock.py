"""Time helpers shared by every domain: aware UTC moments, whatever the database returned."""

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Annotated

from pydantic import AfterValidator

# China Standard Time (no daylight saving): how invoice platforms and merchants read a time without a zone.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")


def utc(moment: datetime | None = None) -> datetime:
    """The moment in UTC (now when None); a naive moment, as SQLite returns them, is taken as UTC."""
    if moment is None:
        return datetime.now(UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def beijing_if_naive(moment: datetime) -> datetime:
    """The moment with Beijing time assumed when it has no zone, as invoice platforms and merchants write it."""
    return moment if moment.tzinfo else moment.replace(tzinfo=BEIJING)


def beijing_today() -> date:
    """Today's date in Beijing, the day merchants mean by 今天 (the server's own zone may be UTC)."""
    return datetime.now(BEIJING).date()


# A moment in an API body: always serialised with its zone (a naive value from SQLite is UTC), as OpenAPI's date-time.
UtcDateTime = Annotated[datetime, AfterValidator(utc)]
