"""Find and validate invoice identifiers in free text: 20-digit 数电票 numbers, 发票代码 + 发票号码."""

import re
from dataclasses import dataclass, field
from datetime import date

from knowledge.text import clean

# Digit runs that may be split by spaces or dashes, as merchants paste them.
_DIGIT_CLUSTER = re.compile(r"[0-9](?:[ \t\-]*[0-9])*")
_RUN = re.compile(r"[0-9]+")
# Dates and times are not invoice numbers: 2025-10-01, 2025年10月1日, 10:30.
_DATE_TIME = re.compile(
    r"(?:19|20)[0-9]{2}\s*[-/.年]\s*[0-9]{1,2}\s*[-/.月]\s*[0-9]{1,2}\s*日?|[0-9]{1,2}\s*[:：]\s*[0-9]{2}"
)
_CODE_LABEL = re.compile(r"(发票)?代码\s*[:：]?\s*$")
_NUMBER_LABEL = re.compile(r"(发票)?号码?\s*[:：]?\s*$")

PROVINCES_2 = {
    "11",
    "12",
    "13",
    "14",
    "15",
    "21",
    "22",
    "23",
    "31",
    "32",
    "33",
    "34",
    "35",
    "36",
    "37",
    "41",
    "42",
    "43",
    "44",
    "45",
    "46",
    "50",
    "51",
    "52",
    "53",
    "54",
    "61",
    "62",
    "63",
    "64",
    "65",
}


@dataclass(frozen=True)
class InvoiceRef:
    """An invoice identified by a 20-digit number, or by 发票代码 + 8-digit 发票号码."""

    number: str | None = None
    code: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def kind(self) -> str:
        """ "digital" for a 数电票 number, "tax_control" for code + number, "partial" otherwise."""
        if self.number and len(self.number) == 20:
            return "digital"
        return "tax_control" if self.code and self.number else "partial"

    def as_dict(self) -> dict[str, str]:
        """The fields that were found."""
        return {k: v for k, v in (("code", self.code), ("number", self.number)) if v}


@dataclass(frozen=True)
class InvoiceScan:
    """What a message holds: a usable reference, and/or a problem to explain."""

    ref: InvoiceRef | None
    problem: str | None = None


def digital_number_warnings(number: str, today: date | None = None) -> tuple[str, ...]:
    """Soft checks of a 20-digit 数电票 number: year and province digits."""
    today = today or date.today()
    warnings = []
    year = int(number[:2])
    if not 21 <= year <= today.year % 100:
        warnings.append(f"前两位“{number[:2]}”不像开票年度（应为21至{today.year % 100}之间）")
    region = number[2:4]
    if region not in PROVINCES_2 and not region.startswith("9"):
        warnings.append(f"第3-4位“{region}”不是已知的省份代码")
    return tuple(warnings)


def _looks_digital(digits: str) -> bool:
    return len(digits) == 20 and digits.startswith("2")


def _is_code(digits: str) -> bool:
    if len(digits) == 12:
        return True
    return len(digits) == 10 and digits[:2] in PROVINCES_2


def scan(text: str) -> InvoiceScan | None:
    """Find an invoice reference in a message; None when it mentions no invoice-like digits."""
    text = _DATE_TIME.sub(" ", clean(text))
    code = number = None
    stray: list[str] = []
    for cluster in _DIGIT_CLUSTER.finditer(text):
        runs = _RUN.findall(cluster.group(0))
        digits = "".join(runs)
        before = text[: cluster.start()]
        if len(digits) < 6:
            continue
        if _CODE_LABEL.search(before) and len(digits) in (10, 12):
            code = code or digits
        elif len(runs) == 2 and _is_code(runs[0]) and len(runs[1]) == 8 and not _looks_digital(digits):
            code, number = code or runs[0], number or runs[1]
        elif len(digits) == 20 or (len(digits) == 8 and (_NUMBER_LABEL.search(before) or code)):
            number = number or digits
        elif _is_code(digits):
            code = code or digits
        elif len(digits) == 8:
            number = number or digits
        else:
            stray.append(digits)
    if number and len(number) == 20:
        return InvoiceScan(InvoiceRef(number=number, warnings=digital_number_warnings(number)))
    if code and number:
        return InvoiceScan(InvoiceRef(number=number, code=code))
    if code or number:
        missing = "8位发票号码" if code else "10位或12位发票代码（数电票请直接发20位发票号码）"
        return InvoiceScan(InvoiceRef(number=number, code=code), problem=f"还缺少{missing}")
    if stray:
        return InvoiceScan(None, problem=_length_problem(stray[0]))
    return None


def _length_problem(digits: str) -> str:
    return f"您发的号码是{len(digits)}位数字，发票号码应为20位（数电票），或10位/12位发票代码加8位发票号码（税控发票）"
