"""The business calendar: opening hours, business days, holidays and make-up workdays, and business-time arithmetic."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from core.clock import utc
from core.settings import get_settings

MAX_CALENDAR_DAYS = 3660  # no business time within ten years means the calendar is misconfigured
WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")


def parse_clock_time(value: str) -> time:
    """A "HH:MM" setting as a time."""
    hours, _, minutes = value.strip().partition(":")
    return time(int(hours), int(minutes or 0))


@dataclass(frozen=True)
class BusinessCalendar:
    """Opening hours on business days in one time zone, with holidays and make-up workdays (调休上班)."""

    timezone: ZoneInfo
    days: frozenset[int]
    start: time
    end: time
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        if self.start >= self.end:
            raise ValueError(f"business hours must open before they close: {self.start}–{self.end}")
        if not self.days and not self.workdays:
            raise ValueError("the business calendar has no business days")

    def is_business_day(self, day: date) -> bool:
        """Whether the local date has opening hours."""
        if day in self.holidays:
            return False
        return day in self.workdays or day.weekday() in self.days

    def window(self, day: date) -> tuple[datetime, datetime] | None:
        """The opening and closing moments (UTC) of a local date, or None when it is closed."""
        if not self.is_business_day(day):
            return None
        opening = datetime.combine(day, self.start, tzinfo=self.timezone)
        closing = datetime.combine(day, self.end, tzinfo=self.timezone)
        return utc(opening), utc(closing)

    def local_date(self, moment: datetime) -> date:
        """The local date of a moment."""
        return utc(moment).astimezone(self.timezone).date()

    def is_open(self, moment: datetime) -> bool:
        """Whether the moment is within business hours."""
        window = self.window(self.local_date(moment))
        return window is not None and window[0] <= utc(moment) < window[1]

    def next_opening(self, moment: datetime) -> datetime:
        """The moment itself when open, else the next opening."""
        moment = utc(moment)
        day = self.local_date(moment)
        for _ in range(MAX_CALENDAR_DAYS):
            window = self.window(day)
            if window is not None and moment < window[1]:
                return max(moment, window[0])
            day += timedelta(days=1)
        raise ValueError("no business hours ahead in the calendar")

    def add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        """The moment `seconds` of business time after `start` (a result at closing time stays on that day)."""
        cursor = utc(start)
        if seconds <= 0:
            return cursor
        remaining = float(seconds)
        day = self.local_date(cursor)
        for _ in range(MAX_CALENDAR_DAYS):
            window = self.window(day)
            if window is not None:
                begin = max(cursor, window[0])
                if begin < window[1]:
                    available = (window[1] - begin).total_seconds()
                    if remaining <= available:
                        return begin + timedelta(seconds=remaining)
                    remaining -= available
            day += timedelta(days=1)
        raise ValueError("no business hours ahead in the calendar")

    def business_seconds_between(self, start: datetime, end: datetime) -> float:
        """Business seconds from `start` to `end` (0 when `end` is not later)."""
        start, end = utc(start), utc(end)
        if end <= start:
            return 0.0
        total = 0.0
        day, last = self.local_date(start), self.local_date(end)
        while day <= last:
            window = self.window(day)
            if window is not None:
                overlap = (min(end, window[1]) - max(start, window[0])).total_seconds()
                total += max(0.0, overlap)
            day += timedelta(days=1)
        return total

    def describe_hours(self) -> str:
        """Opening hours for merchants, e.g. "工作日 9:00–18:00"."""
        days = sorted(self.days)
        if days == [0, 1, 2, 3, 4]:
            label = "工作日"
        elif len(days) == 7:
            label = "每天"
        elif days == list(range(days[0], days[-1] + 1)) and len(days) > 2:
            label = f"{WEEKDAYS[days[0]]}至{WEEKDAYS[days[-1]]}"
        else:
            label = "、".join(WEEKDAYS[d] for d in days)
        return f"{label} {_clock(self.start)}–{_clock(self.end)}"

    def day_label(self, now: datetime, moment: datetime) -> str:
        """ "今天 9:00", "明天 9:00", "周一 9:00" or "10月8日 9:00" in the calendar's time zone."""
        local = utc(moment).astimezone(self.timezone)
        days = (local.date() - self.local_date(now)).days
        if days == 0:
            day = "今天"
        elif days == 1:
            day = "明天"
        elif days < 7:
            day = WEEKDAYS[local.weekday()]
        else:
            day = f"{local.month}月{local.day}日"
        return f"{day} {_clock(local)}"


def _clock(moment: time | datetime) -> str:
    return f"{moment.hour}:{moment.minute:02d}"


def calendar_from_settings() -> BusinessCalendar:
    """The business calendar configured in settings."""
    settings = get_settings()
    return BusinessCalendar(
        timezone=ZoneInfo(settings.ticket_timezone),
        days=frozenset(settings.ticket_business_days),
        start=parse_clock_time(settings.ticket_business_start),
        end=parse_clock_time(settings.ticket_business_end),
        holidays=frozenset(date.fromisoformat(d) for d in settings.ticket_holidays),
        workdays=frozenset(date.fromisoformat(d) for d in settings.ticket_makeup_workdays),
    )
