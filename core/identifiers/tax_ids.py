"""Taxpayer ids (税号): 统一社会信用代码 and its check characters, 15-digit legacy ids, ids built on a 身份证号."""

import re
import string
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Literal

from core.identifiers.regions import PROVINCES_2
from core.identifiers.shapes import SEPARATORS, looks_digital, name_chars

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
# Runs of latin letters/digits, possibly split by spaces or dashes, in NFKC-folded text.
_ALNUM_CLUSTER = re.compile(r"[0-9A-Za-z]+(?:[ \t\-‐‑‒–—―−]+[0-9A-Za-z]+)*")
_ALNUM_RUN = re.compile(r"[0-9A-Za-z]+")


@dataclass(frozen=True)
class TaxIdCheck:
    """A checked taxpayer id: its normalised form, its kind, whether it is usable, and why not."""

    value: str
    kind: Literal["uscc", "legacy15", "other"]
    ok: bool
    problem: str | None = None
    warnings: tuple[str, ...] = ()


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
    return SEPARATORS.sub("", unicodedata.normalize("NFKC", text)).translate(_ASCII_UPPER)


def check_taxpayer_id(text: str) -> TaxIdCheck:
    """Validate a taxpayer id (统一社会信用代码, old 15-digit id, or another 15-20 character id)."""
    value = normalize_taxpayer_id(text)
    if not value:
        return TaxIdCheck(value, "other", False, "没有收到税号，请发送18位统一社会信用代码（或15至20位的纳税人识别号）")
    bad = [c for c in value if c not in _ALNUM]
    if bad:
        legal = "".join(c for c in value if c in _ALNUM)
        kind = _taxpayer_kind(legal) if legal else "other"
        problem = f"税号只能由数字和英文字母组成，不能包含{name_chars(bad)}"
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
    for _, _, value in taxpayer_id_spans(unicodedata.normalize("NFKC", text)):
        return value
    return None


def taxpayer_id_spans(text: str, *, with_letters_only: bool = False) -> Iterator[tuple[int, int, str]]:
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
    if not 15 <= len(SEPARATORS.sub("", candidate)) <= 20:
        return None
    check = check_taxpayer_id(candidate)
    if not check.ok or looks_digital(check.value):
        return None
    if not check.warnings:
        return check.value
    # Some early codes fail the check character but are real: accept an otherwise well-formed code with letters.
    only_check_char = len(check.warnings) == 1 and check.warnings[0].startswith("校验位")
    has_letter = not check.value[:17].isdigit()
    return check.value if check.kind == "uscc" and only_check_char and has_letter else None
