"""Find, decode and validate identifiers in free text: 数电票 numbers, 发票代码 + 发票号码, taxpayer ids (税号)."""

import re
import string
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

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

# Provinces by the first two digits of their GB/T 2260 code; 数电票 numbers and 发票代码 use them.
PROVINCE_NAMES = {
    "11": "北京",
    "12": "天津",
    "13": "河北",
    "14": "山西",
    "15": "内蒙古",
    "21": "辽宁",
    "22": "吉林",
    "23": "黑龙江",
    "31": "上海",
    "32": "江苏",
    "33": "浙江",
    "34": "安徽",
    "35": "福建",
    "36": "江西",
    "37": "山东",
    "41": "河南",
    "42": "湖北",
    "43": "湖南",
    "44": "广东",
    "45": "广西",
    "46": "海南",
    "50": "重庆",
    "51": "四川",
    "52": "贵州",
    "53": "云南",
    "54": "西藏",
    "61": "陕西",
    "62": "甘肃",
    "63": "青海",
    "64": "宁夏",
    "65": "新疆",
}
PROVINCES_2 = set(PROVINCE_NAMES)
# 计划单列市 keep their own 4-digit region in 发票代码.
PLAN_CITY_NAMES = {"2102": "大连", "3302": "宁波", "3502": "厦门", "3702": "青岛", "4403": "深圳"}

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

# 统一社会信用代码 (GB 32100-2015): 31 symbols, no I, O, Z, S, V; weights 3^(i-1) mod 31.
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE = {c: i for i, c in enumerate(USCC_CHARS)}
_USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]
_FORBIDDEN_LETTERS = "IOZSV"
# 登记管理部门代码 (1st character) and, where fully known, its 机构类别 (2nd character).
USCC_DEPARTMENTS = {
    "1": "机构编制",
    "2": "外交",
    "3": "司法行政",
    "4": "文化",
    "5": "民政",
    "6": "旅游",
    "7": "宗教",
    "8": "工会",
    "9": "工商",
    "A": "中央军委改革和编制办公室",
    "N": "农业",
    "Y": "其他",
}
_USCC_CATEGORIES = {"1": "1239", "5": "1239", "9": "123", "N": "1239", "Y": "1"}
# The central level registers under 100000; provinces under their own codes.
_USCC_REGIONS = PROVINCES_2 | {"10"}
# 组织机构代码 (GB 11714-1997): 0-9 A-Z valued 0-35, weights of the first 8 characters.
_ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]

_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)
_ALNUM = frozenset(string.digits + string.ascii_uppercase)
# Separators merchants type inside ids: spaces and dashes (NFKC already folded full-width forms).
_SEPARATORS = re.compile(r"[\s\-‐‑‒–—―−]+")
# Runs of latin letters/digits, possibly split by spaces or dashes, in NFKC-folded text.
_ALNUM_CLUSTER = re.compile(r"[0-9A-Za-z]+(?:[ \t\-‐‑‒–—―−]+[0-9A-Za-z]+)*")
_ALNUM_RUN = re.compile(r"[0-9A-Za-z]+")


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


@dataclass(frozen=True)
class TaxIdCheck:
    """A checked taxpayer id: its normalised form, its kind, whether it is usable, and why not."""

    value: str
    kind: Literal["uscc", "legacy15", "other"]
    ok: bool
    problem: str | None = None
    warnings: tuple[str, ...] = ()


# --- 数电票 numbers and 发票代码 -----------------------------------------------------------------------------


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
    this_year = (today or date.today()).year
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
    value = _SEPARATORS.sub("", unicodedata.normalize("NFKC", text))
    bad = [c for c in value if c not in string.digits]
    if bad:
        raise ValueError(f"{what}只能包含数字，发现：{_name_chars(bad)}")
    return value


# --- finding invoice references in messages ------------------------------------------------------------------


def _looks_digital(digits: str) -> bool:
    return len(digits) == 20 and digits.startswith("2")


def _is_code(digits: str) -> bool:
    if len(digits) == 12:
        return True
    return len(digits) == 10 and digits[:2] in PROVINCES_2


def scan(text: str) -> InvoiceScan | None:
    """Find an invoice reference in a message; None when it mentions no invoice-like digits."""
    text = clean(text)
    # A taxpayer id such as 91110108MA01ABCD5T holds digit runs that are not invoice numbers.
    for start, end, _ in _taxpayer_id_spans(text, with_letters_only=True):
        text = text[:start] + "|" * (end - start) + text[end:]
    text = _DATE_TIME.sub(" ", text)
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
        return InvoiceScan(InvoiceRef(number=number, code=code), problem=_lookalike_problem(text) or f"还缺少{missing}")
    if stray:
        return InvoiceScan(None, problem=_lookalike_problem(text) or _length_problem(stray[0]))
    return None


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
        token = _SEPARATORS.sub("", match.group(0))
        letters = sorted({c for c in token if not c.isdigit()})
        if letters and len(token) in (8, 10, 12, 20) and sum(c.isdigit() for c in token) >= 6:
            found = "、".join(f"“{c}”" for c in letters)
            return f"号码“{token}”里有字母{found}，发票号码和发票代码只能是数字（字母O应为数字0，字母I或l应为数字1）"
    return None


# --- taxpayer ids: 统一社会信用代码, 15-digit legacy ids, individual-based ids ------------------------------------


def uscc_check_char(first17: str) -> str:
    """The GB 32100-2015 check character for the first 17 characters of a 统一社会信用代码."""
    body = first17.translate(_ASCII_UPPER)
    if len(body) != 17 or any(c not in _USCC_VALUE for c in body):
        raise ValueError(f"需要17位由数字和大写字母（不含I、O、Z、S、V）组成的代码本体，收到：{first17!r}")
    total = sum(_USCC_VALUE[c] * w for c, w in zip(body, _USCC_WEIGHTS, strict=True))
    return USCC_CHARS[(31 - total % 31) % 31]


def _org_check_char(first8: str) -> str:
    """The GB 11714-1997 check character of a 组织机构代码."""
    total = sum(int(c, 36) * w for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    value = 11 - total % 11
    return "X" if value == 10 else "0" if value == 11 else str(value)


def normalize_taxpayer_id(text: str) -> str:
    """The taxpayer id as systems store it: NFKC (full-width folded), upper-case, spaces and dashes removed."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).translate(_ASCII_UPPER)


def check_taxpayer_id(text: str) -> TaxIdCheck:
    """Validate a taxpayer id (统一社会信用代码, old 15-digit id, or another 15-20 character id)."""
    value = normalize_taxpayer_id(text)
    if not value:
        return TaxIdCheck(value, "other", False, "没有收到税号，请发送18位统一社会信用代码（或15至20位的纳税人识别号）")
    bad = [c for c in value if c not in _ALNUM]
    if bad:
        legal = "".join(c for c in value if c in _ALNUM)
        kind = _taxpayer_kind(legal) if legal else "other"
        problem = f"税号只能由数字和英文字母组成，不能包含{_name_chars(bad)}"
        return TaxIdCheck(value, kind, False, problem)
    problems = []
    kind = _taxpayer_kind(value)
    n = len(value)
    if kind == "uscc" and n != 18:
        problems.append(f"统一社会信用代码应为18位，您发送的是{n}位")
    elif not 15 <= n <= 20:
        problems.append(f"税号应为15至20位（统一社会信用代码为18位），您发送的是{n}位")
    forbidden = [c for c in dict.fromkeys(value) if c in _FORBIDDEN_LETTERS]
    if forbidden:
        problems.append(f"税号中不能包含字母 I、O、Z、S、V（发现：{'、'.join(forbidden)}）")
        if kind == "uscc" and n == 18 and all(c in _USCC_VALUE for c in value[:17]):
            problems.append(f"第18位校验位按计算应为 {uscc_check_char(value[:17])}")
    if problems:
        return TaxIdCheck(value, kind, False, "；".join(problems))
    if kind == "uscc":
        warnings = _uscc_warnings(value)
    elif kind == "legacy15":
        warnings = _legacy_warnings(value)
    elif _looks_id_based(value):
        warnings = ()
    else:
        warnings = ("不是常见的税号格式（统一社会信用代码为18位，旧税号为15位），请再核对一下",)
    return TaxIdCheck(value, kind, True, None, warnings)


def _taxpayer_kind(value: str) -> Literal["uscc", "legacy15", "other"]:
    """Which kind of taxpayer id an upper-case alphanumeric value is meant to be."""
    if len(value) == 18:
        return "uscc"
    if len(value) == 15 and value[:6].isdigit() and value[:2] in PROVINCES_2:
        return "legacy15"
    if _looks_id_based(value):
        return "other"
    looks_uscc = value[0] in USCC_DEPARTMENTS and value[2:8].isdigit() and len(value) >= 8
    return "uscc" if looks_uscc and 10 <= len(value) <= 26 else "other"


def _looks_id_based(value: str) -> bool:
    """True for a 17/20-character id built from a 15/18-digit 居民身份证号 plus two digits."""
    if value[:2] not in PROVINCES_2:
        return False
    if len(value) == 17 and value.isdigit():
        return _is_date("19" + value[6:12])
    if len(value) == 20 and value[:17].isdigit() and value[17] in "0123456789X" and value[18:].isdigit():
        return value[6:8] in ("19", "20") and _is_date(value[6:14])
    return False


def _is_date(yyyymmdd: str) -> bool:
    """True when YYYYMMDD is a calendar date."""
    try:
        date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return True


def _uscc_warnings(value: str) -> tuple[str, ...]:
    """Soft checks of an 18-character 统一社会信用代码 written in legal characters."""
    warnings = []
    expected = uscc_check_char(value[:17])
    if value[17] != expected:
        warnings.append(f"校验位与计算结果不符（应为 {expected}），请再核对一下；个别早期代码也会出现这种情况")
    department, category = value[0], value[1]
    categories = _USCC_CATEGORIES.get(department)
    if department not in USCC_DEPARTMENTS:
        warnings.append(f"第1位“{department}”不是已知的登记管理部门代码")
    elif categories and category not in categories:
        warnings.append(
            f"第2位机构类别代码“{category}”与登记管理部门“{department}”（{USCC_DEPARTMENTS[department]}）不匹配"
        )
    warnings += _region_warnings(value[2:8], "第3-8位", _USCC_REGIONS)
    org_expected = _org_check_char(value[8:16])
    if value[16] != org_expected:
        warnings.append(f"第9-17位组织机构代码的校验位与计算结果不符（应为 {org_expected}），请再核对一下")
    return tuple(warnings)


def _legacy_warnings(value: str) -> tuple[str, ...]:
    """Soft checks of a 15-character legacy id: 6-digit region + 9-character 组织机构代码."""
    if _is_date("19" + value[6:12]) and value.isdigit():
        return ()  # an old 15-digit 身份证号 has no 组织机构代码 to check
    expected = _org_check_char(value[6:14])
    if value[14] != expected:
        return (f"第7-15位组织机构代码的校验位与计算结果不符（应为 {expected}），请再核对一下",)
    return ()


def _region_warnings(region: str, where: str, known: set[str]) -> list[str]:
    """Warnings about a 6-digit 行政区划码 inside an id."""
    if not region.isdigit():
        return [f"{where}应为6位数字的行政区划码，实际是“{region}”"]
    if region[:2] not in known:
        return [f"{where}“{region}”不是已知的行政区划码"]
    return []


def find_taxpayer_id(text: str) -> str | None:
    """The first plausible taxpayer id in free text, normalised; never an invoice number or a short code."""
    for _, _, value in _taxpayer_id_spans(unicodedata.normalize("NFKC", text)):
        return value
    return None


def _taxpayer_id_spans(text: str, *, with_letters_only: bool = False) -> Iterator[tuple[int, int, str]]:
    """(start, end, normalised id) of the plausible taxpayer ids in NFKC text, in order, not overlapping."""
    for cluster in _ALNUM_CLUSTER.finditer(text):
        runs = list(_ALNUM_RUN.finditer(cluster.group(0)))
        taken = 0  # runs before this index belong to an id already found
        for i, first in enumerate(runs):
            if i < taken:
                continue
            windows = []
            length = 0
            for run in runs[i:]:
                length += len(run.group(0))
                if length > 20:
                    break
                windows.append(run)
            for size in range(len(windows), 0, -1):
                start, end = cluster.start() + first.start(), cluster.start() + windows[size - 1].end()
                value = _plausible_taxpayer_id(text[start:end])
                if value and (not with_letters_only or not value.isdigit()):
                    yield start, end, value
                    taken = i + size
                    break


def _plausible_taxpayer_id(candidate: str) -> str | None:
    """The normalised id when a candidate is a clean taxpayer id, or a real-looking USCC failing its check."""
    if not 15 <= len(_SEPARATORS.sub("", candidate)) <= 20:
        return None
    check = check_taxpayer_id(candidate)
    if not check.ok or _looks_digital(check.value):
        return None
    if not check.warnings:
        return check.value
    # Some early codes fail the check character but are real: accept an otherwise well-formed code with letters.
    only_check_char = len(check.warnings) == 1 and check.warnings[0].startswith("校验位")
    has_letter = not check.value[:17].isdigit()
    return check.value if check.kind == "uscc" and only_check_char and has_letter else None


def _name_chars(chars: list[str]) -> str:
    """Characters named for a message: “。”、“#”, invisible ones as U+XXXX."""
    unique = list(dict.fromkeys(chars))
    named = [f"“{c}”" if c.isprintable() and not c.isspace() else f"U+{ord(c):04X}" for c in unique[:5]]
    return "、".join(named) + ("等" if len(unique) > 5 else "")
