"""Dates as merchants type them: 2025-03-01, 2025年3月1日, 3月1号, 今天, 昨天."""

import re
import unicodedata
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, timedelta

from core.clock import beijing_today

_FULL = re.compile(r"(20\d{2})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?")
_MONTH_DAY = re.compile(r"(?<![\d.])(\d{1,2})\s*月\s*(\d{1,2})\s*[日号]")
_COMPACT = re.compile(r"(?<!\d)(20\d{2})(\d{2})(\d{2})(?!\d)")
_RELATIVE = {"今天": 0, "今日": 0, "昨天": 1, "昨日": 1, "前天": 2}


@dataclass(frozen=True)
class DateReading:
    """A date found in a message, or why the date typed is not one."""

    value: date | None
    problem: str | None = None


def read_date(text: str, today: date | None = None) -> DateReading | None:
    """The date a message names (not later than today); None when it names none."""
    today = today or beijing_today()
    text = unicodedata.normalize("NFKC", text)
    for word, days in _RELATIVE.items():
        if word in text:
            return DateReading(today - timedelta(days=days))
    match = _FULL.search(text) or _COMPACT.search(text)
    if match:
        year, month, day = (int(part) for part in match.groups())
    else:
        match = _MONTH_DAY.search(text)
        if not match:
            return None
        year, (month, day) = today.year, (int(part) for part in match.groups())
    try:
        value = date(year, month, day)
    except ValueError:
        if not 1 <= month <= 12:
            return DateReading(None, f"没有{month}月")
        return DateReading(None, f"{month}月没有{day}日")
    if value > today and match.re is _MONTH_DAY:  # "12月5号" typed in March means last December
        with suppress(ValueError):
            value = value.replace(year=year - 1)
    if value > today:
        return DateReading(None, f"{value.year}年{value.month}月{value.day}日还没到，开票日期不会晚于今天")
    return DateReading(value)
