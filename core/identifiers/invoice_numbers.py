"""Invoice numbers: decoding 数电票 numbers and 发票代码 + 发票号码, and finding them in merchants' messages."""

import re
import string
import unicodedata
from dataclasses import dataclass, field
from datetime import date

from core.clock import beijing_today
from core.identifiers.regions import PLAN_CITY_NAMES, PROVINCE_NAMES, PROVINCES_2
from core.identifiers.shapes import SEPARATORS, looks_digital, name_chars
from core.identifiers.tax_ids import taxpayer_id_spans
from core.text import clean

# Digit runs that may be split by spaces or dashes, as merchants paste them.
_DIGIT_CLUSTER = re.compile(r"[0-9](?:[ \t\-]*[0-9])*")
_RUN = re.compile(r"[0-9]+")
# Dates and times are not invoice numbers: 2025-10-01, 2025年10月1日, 10:30.
_DATE_TIME = re.compile(
    r"(?:19|20)[0-9]{2}\s*[-/.年]\s*[0-9]{1,2}\s*[-/.月]\s*[0-9]{1,2}\s*日?|[0-9]{1,2}\s*[:：]\s*[0-9]{2}"
)
_CODE_LABEL = re.compile(r"(发票)?代码\s*[:：]?\s*$")
_NUMBER_LABEL = re.compile(r"(发票)?号码?\s*[:：]?\s*$")
# An invoice number typed with the letters O or I/l in place of the digits 0 and 1.
_LOOKALIKE = re.compile(r"(?<![0-9A-Za-z])[0-9OoIl](?:[ \t\-]*[0-9OoIl])*(?![0-9A-Za-z])")

UNKNOWN_TYPE = "未知票种"
# 10-digit 发票代码: the 8th digit is the invoice type.
_TYPES_10 = {
    "1": "增值税专用发票",
    "5": "增值税专用发票",
    "3": "增值税普通发票",
    "6": "增值税普通发票",
    "2": "货物运输业增值税专用发票",
    "7": "货物运输业增值税专用发票",
}
# 12-digit 发票代码 starting with 0: the 11th-12th digits are the invoice type.
_TYPES_12 = {
    "04": "增值税普通发票（折叠票）",
    "05": "增值税普通发票（折叠票）",
    "06": "增值税普通发票（卷票）",
    "07": "增值税普通发票（卷票）",
    "11": "增值税电子普通发票",
    "12": "收费公路通行费增值税电子普通发票",
    "13": "增值税电子专用发票",
}
# Early 电子普票 codes that the official 查验 page recognises by name.
_LEGACY_E_INVOICE_CODES = {"144031539110", "131001570151", "133011501118", "111001571071"}


@dataclass(frozen=True)
class DigitalNumberInfo:
    """What the digits of a 20-digit 数电票 number say."""

    number: str
    year: int
    region_code: str
    region: str | None
    channel: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class InvoiceCodeInfo:
    """What the digits of a 10- or 12-digit 发票代码 say."""

    code: str
    region_code: str
    region: str | None
    year: int
    invoice_type: str
    warnings: tuple[str, ...] = ()


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

    def describe(self) -> str:
        """A short Chinese description for merchants, e.g. "数电票（2025年，北京）"."""
        try:
            if self.kind == "digital" and self.number:
                digital = decode_digital_number(self.number)
                place = f"，{digital.region}" if digital.region else ""
                return f"数电票（{digital.year}年{place}）"
            if self.code:
                info = decode_invoice_code(self.code)
                name = "税控发票" if info.invoice_type == UNKNOWN_TYPE else info.invoice_type
                details = "，".join([*([info.region] if info.region else []), f"{info.year}年版"])
                # "增值税普通发票（卷票）" + details -> "增值税普通发票（卷票，北京，2018年版）"
                return f"{name[:-1]}，{details}）" if name.endswith("）") else f"{name}（{details}）"
        except ValueError:
            pass
        if self.code:
            return f"发票代码 {self.code}"
        return f"发票号码 {self.number}" if self.number else "发票"


@dataclass(frozen=True)
class InvoiceScan:
    """What a message holds: a usable reference, and/or a problem to explain."""

    ref: InvoiceRef | None
    problem: str | None = None


# --- 数电票 numbers and 发票代码 -----------------------------------------------------------------------------


def digital_number_warnings(number: str, today: date | None = None) -> tuple[str, ...]:
    """Soft checks of a 20-digit 数电票 number: year and province digits."""
    today = today or beijing_today()
    warnings = []
    year = int(number[:2])
    if not 21 <= year <= today.year % 100:
        warnings.append(f"前两位“{number[:2]}”不像开票年度（应为21至{today.year % 100}之间）")
    region = number[2:4]
    if region not in PROVINCES_2 and not region.startswith("9"):
        warnings.append(f"第3-4位“{region}”不是已知的省份代码")
    return tuple(warnings)


def decode_digital_number(number: str, today: date | None = None) -> DigitalNumberInfo:
    """Decode a 数电票 number (year, region, channel); ValueError with a Chinese reason if it is not 20 digits."""
    digits = _digits(number, "数电票号码")
    if len(digits) != 20:
        raise ValueError(f"数电票号码应为20位数字，您发送的是{len(digits)}位")
    region_code = digits[2:4]
    warnings = digital_number_warnings(digits, today)
    if region_code.startswith("9"):
        warnings += (f"第3-4位“{region_code}”可能是计划单列市的代码，无法确定具体城市",)
    return DigitalNumberInfo(
        number=digits,
        year=2000 + int(digits[:2]),
        region_code=region_code,
        region=PROVINCE_NAMES.get(region_code),
        channel=digits[4],
        warnings=warnings,
    )


def decode_invoice_code(code: str, today: date | None = None) -> InvoiceCodeInfo:
    """Decode a 10- or 12-digit 发票代码 (region, year, invoice type); ValueError with a Chinese reason otherwise."""
    digits = _digits(code, "发票代码")
    if len(digits) not in (10, 12):
        raise ValueError(f"发票代码应为10位或12位数字，您发送的是{len(digits)}位")
    offset = 0 if len(digits) == 10 else 1
    region_code = digits[offset : offset + 4]
    region = PLAN_CITY_NAMES.get(region_code) or PROVINCE_NAMES.get(region_code[:2])
    warnings = ()
    if region is None:
        warnings = (f"第{offset + 1}-{offset + 4}位“{region_code}”不是已知的地区代码",)
    yy = int(digits[offset + 4 : offset + 6])
    this_year = (today or beijing_today()).year
    year = 2000 + yy if 2000 + yy <= this_year else 1900 + yy
    return InvoiceCodeInfo(
        code=digits,
        region_code=region_code,
        region=region,
        year=year,
        invoice_type=_invoice_type(digits),
        warnings=warnings,
    )


def _invoice_type(code: str) -> str:
    """The invoice type a 发票代码 stands for, as the official 查验 page decides it."""
    if len(code) == 10:
        return _TYPES_10.get(code[7], UNKNOWN_TYPE)
    if code in _LEGACY_E_INVOICE_CODES:
        return "增值税电子普通发票"
    if code[0] == "0":
        return _TYPES_12.get(code[10:12], UNKNOWN_TYPE)
    if code[7] == "2":
        return "机动车销售统一发票"
    if code[0] == "1" and code[1:5] == "4403":
        return "区块链电子普通发票"
    return UNKNOWN_TYPE


def _digits(text: str, what: str) -> str:
    """The digits of an identifier typed with full-width digits, spaces or dashes; ValueError on anything else."""
    value = SEPARATORS.sub("", unicodedata.normalize("NFKC", text))
    bad = [c for c in value if c not in string.digits]
    if bad:
        raise ValueError(f"{what}只能包含数字，发现：{name_chars(bad)}")
    return value


# --- finding invoice references in messages ------------------------------------------------------------------


def _is_code(digits: str) -> bool:
    if len(digits) == 12:
        return True
    return len(digits) == 10 and digits[:2] in PROVINCES_2


def scan(text: str) -> InvoiceScan | None:
    """Find an invoice reference in a message; None when it mentions no invoice-like digits."""
    text = clean(text)
    # A taxpayer id such as 91110108MA01ABCD5T holds digit runs that are not invoice numbers.
    for start, end, _ in taxpayer_id_spans(text, with_letters_only=True):
        text = text[:start] + "|" * (end - start) + text[end:]
    text = _without_dates(text)
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
        elif len(runs) == 2 and _is_code(runs[0]) and len(runs[1]) == 8 and not looks_digital(digits):
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
        return InvoiceScan(InvoiceRef(number=number, code=code), problem=_lookalike_problem(text) or f"还缺少{missing}")
    if stray:
        return InvoiceScan(None, problem=_lookalike_problem(text) or _length_problem(stray[0]))
    return None


def _without_dates(text: str) -> str:
    """The text with dates and times blanked out, except inside a pasted 数电票 number ("2111 1900-1-10 000000000")."""
    numbers = [
        (cluster.start(), cluster.end())
        for cluster in _DIGIT_CLUSTER.finditer(text)
        if _plausible_digital("".join(_RUN.findall(cluster.group(0))))
    ]

    def blank(match: re.Match[str]) -> str:
        start, end = match.start(), match.start() + len(match.group(0).rstrip())
        inside = any(first <= start and end <= last for first, last in numbers)
        return match.group(0) if inside else " "

    return _DATE_TIME.sub(blank, text)


def _plausible_digital(digits: str) -> bool:
    """True for 20 digits that start like a 数电票 number: year 21 or later, then a province code."""
    return len(digits) == 20 and digits[:2] >= "21" and digits[2:4] in PROVINCES_2


def _length_problem(digits: str) -> str:
    """Why a run of digits is no invoice number, with its length and the nearest valid one."""
    n = len(digits)
    tax_control = "税控发票为10位或12位发票代码加8位发票号码"
    if n >= 14:
        diff = f"{'少' if n < 20 else '多'}了{abs(n - 20)}位"
        if n == 18 and _is_code(digits[:10]):
            return f"您发的号码是{n}位数字，数电票号码应为20位（{diff}）；如果是10位发票代码加8位发票号码，请用空格隔开"
        return f"您发的号码是{n}位数字，数电票号码应为20位（{diff}）；{tax_control}"
    if n == 7:
        return f"您发的号码是{n}位数字，税控发票的发票号码应为8位（少了1位），发票代码为10位或12位；数电票号码应为20位"
    return f"您发的号码是{n}位数字，税控发票的发票号码应为8位、发票代码应为10位或12位；数电票号码应为20位"


def _lookalike_problem(text: str) -> str | None:
    """A precise reason when an invoice number was typed with the letter O or I/l instead of 0 or 1."""
    for match in _LOOKALIKE.finditer(text):
        token = SEPARATORS.sub("", match.group(0))
        letters = sorted({c for c in token if not c.isdigit()})
        if letters and len(token) in (8, 10, 12, 20) and sum(c.isdigit() for c in token) >= 6:
            found = "、".join(f"“{c}”" for c in letters)
            return f"号码“{token}”里有字母{found}，发票号码和发票代码只能是数字（字母O应为数字0，字母I或l应为数字1）"
    return None
