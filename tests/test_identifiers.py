"""Finding invoice numbers (数电票 20位, 发票代码 + 发票号码) in merchants' messages."""

import unicodedata
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knowledge.identifiers import InvoiceScan, digital_number_warnings, scan

FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
# Provinces of 10-digit 发票代码 (first two digits), and the 2-digit region codes of 数电票 numbers.
PROVINCES = [
    str(n) for n in (*range(11, 16), *range(21, 24), *range(31, 38), *range(41, 47), *range(50, 55), *range(61, 66))
]
PROVINCES_NOT_2 = [p for p in PROVINCES if not p.startswith("2")]
TODAY = date(2025, 6, 1)

HYPOTHESIS = settings(max_examples=200, deadline=None, database=None)

chinese_filler = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0x4E00, max_codepoint=0x9FA5),
        st.sampled_from(list("，。：？！、（）“” ")),
    ),
    max_size=12,
)


def digit_string(size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=size, max_size=size)


def found(text: str) -> InvoiceScan:
    result = scan(text)
    assert result is not None, text
    return result


def assert_digital(text: str, number: str) -> None:
    result = found(text)
    assert result.problem is None
    assert result.ref is not None
    assert result.ref.number == number
    assert result.ref.code is None
    assert result.ref.kind == "digital"


def assert_tax_control(text: str, code: str, number: str) -> None:
    result = found(text)
    assert result.problem is None, result.problem
    assert result.ref is not None
    assert (result.ref.code, result.ref.number) == (code, number)
    assert result.ref.kind == "tax_control"
    assert result.ref.as_dict() == {"code": code, "number": number}


# --- 数电票: 20-digit numbers ------------------------------------------------------------------------------

NUMBER = "25112000000098765432"


@pytest.mark.parametrize(
    "text",
    [
        NUMBER,
        f"发票号码{NUMBER}查一下",
        f"请帮我查一下这张票：{NUMBER}，谢谢！",
        "2511 2000 0000 9876 5432",
        "号码是 2511-2000-0000-9876-5432 麻烦看看",
        "25-11-20000000-98765432",
        "2511 - 2000 - 0000 9876 5432",
        NUMBER.translate(FULL_WIDTH),
        f"数电票{NUMBER[:10].translate(FULL_WIDTH)} {NUMBER[10:]}开出来了吗",
        f"  {NUMBER}\t",
    ],
)
def test_digital_number_extracted_exactly(text):
    assert_digital(text, NUMBER)


def test_digital_number_has_no_warnings_when_plausible():
    assert found(f"查{NUMBER}").ref.warnings == digital_number_warnings(NUMBER)
    assert digital_number_warnings(NUMBER, today=TODAY) == ()


def test_first_of_two_numbers_wins():
    other = "24440000000011112222"
    assert_digital(f"{NUMBER} 和 {other}", NUMBER)


@pytest.mark.parametrize(
    ("number", "fragment"),
    [
        ("99112000000098765432", "99"),  # year in the future
        ("20112000000098765432", "20"),  # before 数电票 existed
        ("26112000000098765432", "26"),  # next year, relative to TODAY
    ],
)
def test_year_warning(number, fragment):
    warnings = digital_number_warnings(number, today=TODAY)
    assert len(warnings) == 1
    assert "年度" in warnings[0] and f"“{fragment}”" in warnings[0]
    assert "21至25" in warnings[0]


@pytest.mark.parametrize("region", ["00", "10", "16", "47", "70"])
def test_region_warning(region):
    warnings = digital_number_warnings(f"25{region}2000000098765432", today=TODAY)
    assert len(warnings) == 1
    assert "省份" in warnings[0] and f"“{region}”" in warnings[0]


@pytest.mark.parametrize("region", ["11", "44", "65", "91", "99"])
def test_known_regions_give_no_warning(region):
    assert digital_number_warnings(f"25{region}2000000098765432", today=TODAY) == ()


def test_year_and_region_warnings_together():
    assert len(digital_number_warnings("99002000000098765432", today=TODAY)) == 2


def test_scan_carries_warnings():
    result = found("帮我查 99002000000098765432")
    assert result.ref is not None and result.ref.number == "99002000000098765432"
    assert result.problem is None
    assert any("省份" in w for w in result.ref.warnings)
    assert any("年度" in w for w in result.ref.warnings)


# --- 税控发票: 发票代码 + 8-digit 发票号码 ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code", "number"),
    [
        ("发票代码：011001900111 发票号码：12345678", "011001900111", "12345678"),
        ("发票代码:011001900111，发票号码:12345678", "011001900111", "12345678"),
        ("代码 044031900111 号码 87654321", "044031900111", "87654321"),
        ("发票代码：1100191130 发票号码：12345678", "1100191130", "12345678"),
        ("发票号码：12345678 发票代码：1100191130", "1100191130", "12345678"),
        ("发票代码：０１１００１９００１１１ 发票号码：１２３４５６７８", "011001900111", "12345678"),
        ("011001900111 12345678", "011001900111", "12345678"),
        ("帮我查下 044031900111 12345678 这张票", "044031900111", "12345678"),
        ("1100191130 12345678", "1100191130", "12345678"),
        ("4403191130 00000001", "4403191130", "00000001"),
        ("查询3100123456-12345678", "3100123456", "12345678"),
    ],
)
def test_code_and_number(text, code, number):
    assert_tax_control(text, code, number)


@pytest.mark.parametrize("province", ["21", "22", "23"])
def test_code_and_number_for_provinces_starting_with_2(province):
    code = f"{province}00191130"
    assert_tax_control(f"{code} 12345678", code, "12345678")


def test_labelled_code_of_province_21_works():
    assert_tax_control("发票代码：2100191130 发票号码：12345678", "2100191130", "12345678")


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("发票代码：011001900111", "011001900111"),
        ("代码1100191130", "1100191130"),
        ("1100191130", "1100191130"),
        ("044031900111", "044031900111"),
    ],
)
def test_code_alone_asks_for_number(text, code):
    result = found(text)
    assert result.ref is not None
    assert result.ref.code == code
    assert result.ref.number is None
    assert result.ref.kind == "partial"
    assert "8位发票号码" in result.problem


@pytest.mark.parametrize("text", ["12345678", "发票号码：12345678", "号码 1234-5678"])
def test_number_alone_asks_for_code(text):
    result = found(text)
    assert result.ref is not None
    assert result.ref.number == "12345678"
    assert result.ref.code is None
    assert "发票代码" in result.problem and "20位" in result.problem


# --- wrong lengths, no digits, error codes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("2511200000009876543", 19),
        ("号码是2511 2000 0000 9876 543", 19),
        ("251120000000987654321", 21),
        ("帮我查 1234567 这张", 7),
        ("发票 123456789", 9),
        ("９９００１９１１３０ 12345678", 18),
    ],
)
def test_wrong_length_is_a_problem(text, length):
    result = found(text)
    assert result.ref is None
    assert f"{length}位数字" in result.problem
    assert "20位" in result.problem


@pytest.mark.parametrize(
    "text",
    ["你好", "开票提示服务器繁忙怎么办", "", "   ", "😀😀", "发票号码在哪里看", "12366", "2025年10月1日开的票"],
)
def test_no_invoice_digits(text):
    assert scan(text) is None


@pytest.mark.parametrize(
    "text",
    ["09D11F", "开票报错09D11F怎么办", "盘提示 0963C5 错误", "错误代码：09D121", "报错09d11f 和 09D103"],
)
def test_error_codes_are_not_invoice_numbers(text):
    assert scan(text) is None


def test_dashed_date_is_not_an_invoice_number():
    result = scan("我2025-10-01开的发票怎么还没收到")
    assert result is None or result.ref is None


def test_non_ascii_digits_are_never_returned_verbatim():
    result = scan("٢٥١١٢٠٠٠٠٠٠٠٩٨٧٦٥٤٣٢")
    assert result is None or result.ref is None or result.ref.number == NUMBER


# --- properties --------------------------------------------------------------------------------------------


@st.composite
def digital_numbers(draw) -> str:
    year = draw(st.integers(min_value=21, max_value=25))
    region = draw(st.sampled_from(PROVINCES))
    return f"{year}{region}{draw(digit_string(16))}"


@st.composite
def pasted(draw, number: str) -> str:
    """The number as a merchant might paste it: separators between digits, some digits full-width."""
    separators = st.sampled_from(["", "", "", " ", "-", "  ", " - ", "--"])
    out = []
    for i, ch in enumerate(number):
        if i:
            out.append(draw(separators))
        out.append(ch.translate(FULL_WIDTH) if draw(st.booleans()) else ch)
    return "".join(out)


@HYPOTHESIS
@given(data=st.data(), number=digital_numbers(), before=chinese_filler, after=chinese_filler)
def test_property_digital_number_extracted(data, number, before, after):
    text = before + data.draw(pasted(number)) + after
    assert_digital(text, number)


@HYPOTHESIS
@given(code=digit_string(11).map(lambda s: "0" + s), number=digit_string(8))
def test_property_12_digit_code_and_number(code, number):
    assert_tax_control(f"{code} {number}", code, number)


@HYPOTHESIS
@given(province=st.sampled_from(PROVINCES_NOT_2), rest=digit_string(8), number=digit_string(8), before=chinese_filler)
def test_property_10_digit_code_and_number(province, rest, number, before):
    code = province + rest
    assert_tax_control(f"{before}{code} {number}", code, number)


@HYPOTHESIS
@given(code=digit_string(11).map(lambda s: "0" + s), number=digit_string(8))
def test_property_labelled_code_and_number(code, number):
    assert_tax_control(f"发票代码：{code}\n发票号码：{number}", code, number)


@HYPOTHESIS
@given(text=st.text())
def test_property_scan_never_raises(text):
    result = scan(text)
    if result is None:
        return
    assert isinstance(result, InvoiceScan)
    assert result.ref is not None or result.problem
    if result.ref is not None:
        assert result.ref.code or result.ref.number
        for value in result.ref.as_dict().values():
            assert value.isdigit()
            assert len(value) in (8, 10, 12, 20)


def has_no_digit(ch: str) -> bool:
    return not any(c.isdigit() for c in unicodedata.normalize("NFKC", ch))


@HYPOTHESIS
@given(text=st.text(alphabet=st.characters().filter(has_no_digit)))
def test_property_text_without_digits_is_none(text):
    assert scan(text) is None
