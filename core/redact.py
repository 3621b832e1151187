"""Masking of personal data (tax ids, phone numbers, binding codes) before text reaches a log or a list."""

import re

from core.identifiers.binding import MENTIONS_BINDING

# 统一社会信用代码 (18), older taxpayer ids (15-20 digits/letters) and mainland mobile numbers.
_TAX_ID = re.compile(r"(?<![0-9A-Za-z])([0-9A-HJ-NPQRTUWXY]{2}\d{6})([0-9A-HJ-NPQRTUWXY]{10})(?![0-9A-Za-z])")
_LONG_ID = re.compile(r"(?<!\d)(\d{4})\d{7,12}(\d{4})(?!\d)")
_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)\d{4}(\d{4})(?!\d)")
# A message that binds a chat identity names binding or carries a taxpayer id; its short digit runs are codes.
_CODE = re.compile(r"(?<![0-9A-Za-z])\d{4,8}(?![0-9A-Za-z])")
CODE_MASK = "******"


def mask(text: str) -> str:
    """The text with tax ids and phone numbers partly hidden (first and last characters kept)."""
    text = _TAX_ID.sub(lambda m: m.group(1)[:4] + "*" * 10 + m.group(2)[-4:], text)
    text = _MOBILE.sub(lambda m: m.group(1) + "****" + m.group(2), text)
    return _LONG_ID.sub(lambda m: m.group(1) + "*" * 8 + m.group(2), text)


def mask_binding_code(text: str) -> str:
    """The text with binding codes hidden ("绑定 <taxpayer id> 12345678" shows the code as ******)."""
    if not (MENTIONS_BINDING.search(text) or _TAX_ID.search(text.upper())):
        return text
    return _CODE.sub(CODE_MASK, text)


def mask_private(text: str) -> str:
    """The text with binding codes hidden and tax ids and phone numbers partly hidden (for lists and subjects)."""
    return mask(mask_binding_code(text))
