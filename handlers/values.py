"""Values a guide's step accepts pasted — a 税号, an invoice number, a date — read from a message and checked with the
identifier parsers, so that a wrong one is explained instead of taken for a new question."""

import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from core import identifiers
from core.clock import beijing_today

NOUNS = {"taxpayer_id": "税号", "invoice_number": "发票号码", "date": "日期"}
# Something typed as a taxpayer id: a run of 10+ letters/digits (spaces and dashes allowed) with 6+ digits.
_ID_LIKE = re.compile(r"[0-9A-Za-z](?:[0-9A-Za-z \-]*[0-9A-Za-z])?")


@dataclass(frozen=True)
class Reading:
    """A value read from a message: its normalised form and a note about it, or what is wrong with it."""

    value: str | None
    problem: str | None = None
    note: str | None = None
    is_today: bool = False


def read(kind: str, text: str, today: date | None = None) -> Reading | None:
    """The value of `kind` a message carries, right or wrong; None when it carries none."""
    if kind == "taxpayer_id":
        return _taxpayer_id(text)
    if kind == "invoice_number":
        return _invoice_number(text)
    if kind == "date":
        return _date(text, today or beijing_today())
    raise ValueError(f"unknown value kind {kind!r}")


def _taxpayer_id(text: str) -> Reading | None:
    found = identifiers.find_taxpayer_id(text)
    candidates = [found] if found else []
    folded = unicodedata.normalize("NFKC", text)
    candidates += [m.group(0) for m in _ID_LIKE.finditer(folded) if _id_like(m.group(0))]
    if not candidates:
        return None
    check = identifiers.check_taxpayer_id(candidates[0])
    if not check.ok:
        return Reading(None, problem=check.problem)
    note = "；".join(check.warnings) or None
    return Reading(check.value, note=note)


def _id_like(token: str) -> bool:
    bare = re.sub(r"[ \-]", "", token)
    if bare.isdigit():  # digits only: an old 15-digit id or an 18-digit code, never an invoice number
        return 15 <= len(bare) <= 18
    return len(bare) >= 10 and sum(c.isdigit() for c in bare) >= 6


def _invoice_number(text: str) -> Reading | None:
    scanned = identifiers.scan(text)
    if scanned is None:
        return None
    if scanned.problem or scanned.ref is None:
        return Reading(None, problem=scanned.problem)
    ref = scanned.ref
    value = f"{ref.code} {ref.number}" if ref.code else str(ref.number)
    notes = [ref.describe(), *ref.warnings]
    return Reading(value, note="；".join(notes))


def _date(text: str, today: date) -> Reading | None:
    reading = identifiers.read_date(text, today)
    if reading is None:
        return None
    if reading.value is None:
        return Reading(None, problem=reading.problem)
    day = reading.value
    return Reading(f"{day.year}年{day.month}月{day.day}日", is_today=day == today)
