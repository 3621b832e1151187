"""Personal data is masked before it reaches a log."""

import pytest

from core.redact import mask, mask_binding_code, mask_private


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


@pytest.mark.parametrize(
    "text",
    ["绑定 91110108MA01ABCD5T 12345678", "91110108MA01ABCD5T 12345678", "我的绑定码是 123456", "bangding 87654321"],
)
def test_binding_codes_are_hidden(text):
    code = text.split()[-1]
    assert code not in mask_binding_code(text) and "******" in mask_binding_code(text)


def test_digits_in_messages_that_do_not_bind_are_kept():
    assert mask_binding_code("发票号码12345678查不到") == "发票号码12345678查不到"
    assert mask_binding_code("错误代码 1234") == "错误代码 1234"


def test_lists_hide_codes_tax_ids_and_phones_together():
    shown = mask_private("绑定 91110108MA01ABCD5T 12345678，电话13812345678")
    for secret in ("91110108MA01ABCD5T", "12345678", "13812345678"):
        assert secret not in shown
