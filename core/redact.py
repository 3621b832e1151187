"""Masking of personal data (tax ids, phone numbers) before text reaches a log."""

import re

# 统一社会信用代码 (18), older taxpayer ids (15-20 digits/letters) and mainland mobile numbers.
_TAX_ID = re.compile(r"(?<![0-9A-Za-z])([0-9A-HJ-NPQRTUWXY]{2}\d{6})([0-9A-HJ-NPQRTUWXY]{10})(?![0-9A-Za-z])")
_LONG_ID = re.compile(r"(?<!\d)(\d{4})\d{7,12}(\d{4})(?!\d)")
_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")


def mask(text: str) -> str:
    """The text with tax ids and phone numbers partly hidden (first and last characters kept)."""
    text = _TAX_ID.sub(lambda m: m.group(1)[:4] + "*" * 10 + m.group(2)[-4:], text)
    text = _MOBILE.sub(lambda m: m.group(1) + "****" + m.group(2), text)
    return _LONG_ID.sub(lambda m: m.group(1) + "*" * 8 + m.group(2), text)
