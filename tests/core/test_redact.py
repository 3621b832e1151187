"""Personal data is masked before it reaches a log."""

import pytest

from core.redact import mask


@pytest.mark.parametrize(
    ("text", "hidden", "kept"),
    [
        ("我的手机13812345678请回电", "13812345678", "138****5678"),
        ("税号91110108MA01ABCD2X开不了票", "91110108MA01ABCD2X", "9111**********CD2X"),
        ("纳税人识别号110108123456789", "110108123456789", "1101********6789"),
    ],
)
def test_tax_ids_and_phone_numbers_are_masked(text, hidden, kept):
    masked = mask(text)
    assert hidden not in masked and kept in masked


def test_invoice_codes_and_ordinary_text_are_untouched():
    assert mask("错误代码09D11F，发票号码12345678") == "错误代码09D11F，发票号码12345678"
