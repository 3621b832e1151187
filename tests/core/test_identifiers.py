"""Finding, decoding and validating invoice numbers (数电票 20位, 发票代码 + 发票号码) and taxpayer ids (税号)."""

import re
import unicodedata
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.identifiers import (
    InvoiceRef,
    InvoiceScan,
    TaxIdCheck,
    check_taxpayer_id,
    decode_digital_number,
    decode_invoice_code,
    digital_number_warnings,
    find_taxpayer_id,
    scan,
    uscc_check_char,
)

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


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("2111 1900-1-10 000000000", "21111900110000000000"),  # separators that happen to spell a date
        ("发票号码2111000000001900-00-00", "21110000000019000000"),
        ("2025-10-01 25112000000012345678", "25112000000012345678"),  # a real date next to the number
    ],
)
def test_a_date_shape_inside_a_pasted_digital_number_is_part_of_the_number(text, number):
    assert_digital(text, number)


def test_a_date_before_a_code_is_still_a_date():
    result = found("2013-05-06 011002200111")
    assert result.ref is not None and result.ref.code == "011002200111" and result.ref.number is None


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


# --- wrong lengths and look-alike letters get a precise explanation ----------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2511200000009876543", "数电票号码应为20位（少了1位）"),
        ("251120000000987654321", "数电票号码应为20位（多了1位）"),
        ("25112000000098765", "数电票号码应为20位（少了3位）"),
        ("帮我查 1234567 这张", "发票号码应为8位（少了1位）"),
        ("发票 123456789", "发票号码应为8位、发票代码应为10位或12位"),
        ("110019113012345678", "如果是10位发票代码加8位发票号码，请用空格隔开"),
    ],
)
def test_wrong_length_says_what_is_expected_and_by_how_much(text, expected):
    result = found(text)
    assert result.ref is None
    assert expected in result.problem


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("1234567O", "O"),
        ("发票号码2511200000O098765432", "O"),
        ("25112000000l98765432 查一下", "l"),
        ("发票代码 011001800604 号码 1234567O", "O"),
    ],
)
def test_letter_typed_for_a_digit_is_named(text, letter):
    result = found(text)
    assert f"“{letter}”" in result.problem
    assert "只能是数字" in result.problem


# --- decoding 数电票 numbers and 发票代码 --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "year", "region_code", "region", "channel"),
    [
        (NUMBER, 2025, "11", "北京", "2"),
        ("24312000000136634917", 2024, "31", "上海", "2"),
        ("26427000000316294884", 2026, "42", "湖北", "7"),
        ("26339132621000219582", 2026, "33", "浙江", "9"),
        ("2511-2000 0000 9876 5432", 2025, "11", "北京", "2"),
        (NUMBER.translate(FULL_WIDTH), 2025, "11", "北京", "2"),
    ],
)
def test_decode_digital_number(number, year, region_code, region, channel):
    info = decode_digital_number(number, today=date(2026, 6, 1))
    assert (info.year, info.region_code, info.region, info.channel) == (year, region_code, region, channel)
    assert info.number.isascii() and len(info.number) == 20
    assert info.warnings == ()


@pytest.mark.parametrize("number", ["24942000000012660383", "24922000000012341234"])
def test_digital_number_of_a_plan_city_has_no_region_name_and_a_soft_warning(number):
    info = decode_digital_number(number, today=TODAY)
    assert info.region is None
    assert info.region_code == number[2:4]
    assert len(info.warnings) == 1 and "计划单列市" in info.warnings[0]
    # The warnings scan() shows merchants stay as before: 9x is a known region there.
    assert digital_number_warnings(number, today=TODAY) == ()


def test_decode_digital_number_carries_year_and_region_warnings():
    info = decode_digital_number("99002000000098765432", today=TODAY)
    assert info.year == 2099 and info.region is None
    assert info.warnings == digital_number_warnings("99002000000098765432", today=TODAY)


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("2511200000009876543", "数电票号码应为20位数字，您发送的是19位"),
        ("251120000000987654321", "您发送的是21位"),
        ("2511200000O098765432", "只能包含数字，发现：“O”"),
    ],
)
def test_decode_digital_number_rejects_wrong_input_in_chinese(number, message):
    with pytest.raises(ValueError, match=message):
        decode_digital_number(number)


@pytest.mark.parametrize(
    ("code", "region_code", "region", "year", "invoice_type"),
    [
        ("3100153130", "3100", "上海", 2015, "增值税专用发票"),
        ("1100221130", "1100", "北京", 2022, "增值税专用发票"),
        ("1100191630", "1100", "北京", 2019, "增值税普通发票"),
        ("4403191270", "4403", "深圳", 2019, "货物运输业增值税专用发票"),
        ("2102181130", "2102", "大连", 2018, "增值税专用发票"),
        ("3302181530", "3302", "宁波", 2018, "增值税专用发票"),
        ("3502181330", "3502", "厦门", 2018, "增值税普通发票"),
        ("3702181130", "3702", "青岛", 2018, "增值税专用发票"),
        ("1100191930", "1100", "北京", 2019, "未知票种"),
        ("011001800604", "1100", "北京", 2018, "增值税普通发票（折叠票）"),
        ("065122100313", "6512", "新疆", 2021, "增值税电子专用发票"),
        ("011002200111", "1100", "北京", 2022, "增值税电子普通发票"),
        ("044031900111", "4403", "深圳", 2019, "增值税电子普通发票"),
        ("037011900111", "3701", "山东", 2019, "增值税电子普通发票"),
        ("011002200106", "1100", "北京", 2022, "增值税普通发票（卷票）"),
        ("011002200112", "1100", "北京", 2022, "收费公路通行费增值税电子普通发票"),
        ("144031809110", "4403", "深圳", 2018, "区块链电子普通发票"),
        ("144031539110", "4403", "深圳", 2015, "增值税电子普通发票"),
        ("131001820110", "3100", "上海", 2018, "机动车销售统一发票"),
        ("011002200199", "1100", "北京", 2022, "未知票种"),
        ("０１１００２２０-０１１１", "1100", "北京", 2022, "增值税电子普通发票"),
    ],
)
def test_decode_invoice_code(code, region_code, region, year, invoice_type):
    info = decode_invoice_code(code, today=TODAY)
    assert (info.region_code, info.region, info.year, info.invoice_type) == (region_code, region, year, invoice_type)
    assert info.warnings == ()


def test_decode_invoice_code_warns_on_unknown_region():
    info = decode_invoice_code("9900191130", today=TODAY)
    assert info.region is None and info.region_code == "9900"
    assert info.warnings == ("第1-4位“9900”不是已知的地区代码",)


def test_decode_invoice_code_reads_last_century_years():
    assert decode_invoice_code("1100981130", today=TODAY).year == 1998


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("110019113", "发票代码应为10位或12位数字，您发送的是9位"),
        ("11001911301", "您发送的是11位"),
        ("11OO191130", "“O”"),
    ],
)
def test_decode_invoice_code_rejects_wrong_input_in_chinese(code, message):
    with pytest.raises(ValueError, match=message):
        decode_invoice_code(code)


@pytest.mark.parametrize(
    ("ref", "description"),
    [
        (InvoiceRef(number=NUMBER), "数电票（2025年，北京）"),
        (InvoiceRef(number="24942000000012660383"), "数电票（2024年）"),
        (InvoiceRef(code="011002200111", number="12345678"), "增值税电子普通发票（北京，2022年版）"),
        (InvoiceRef(code="3100153130", number="12345678"), "增值税专用发票（上海，2015年版）"),
        (InvoiceRef(code="011001800604", number="12345678"), "增值税普通发票（折叠票，北京，2018年版）"),
        (InvoiceRef(code="1100191930", number="12345678"), "税控发票（北京，2019年版）"),
        (InvoiceRef(code="9900191130", number="12345678"), "增值税专用发票（2019年版）"),
        (InvoiceRef(code="011002200111"), "增值税电子普通发票（北京，2022年版）"),
        (InvoiceRef(number="12345678"), "发票号码 12345678"),
        (InvoiceRef(code="12345"), "发票代码 12345"),
        (InvoiceRef(), "发票"),
    ],
)
def test_describe(ref, description):
    assert ref.describe() == description


def test_scanned_reference_describes_itself():
    assert found("发票代码：011002200111 发票号码：12345678").ref.describe() == "增值税电子普通发票（北京，2022年版）"
    assert found(f"查一下 {NUMBER}").ref.describe() == "数电票（2025年，北京）"


# --- taxpayer ids: 统一社会信用代码 (GB 32100-2015), legacy ids -------------------------------------------------

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def reference_check_char(first17: str) -> str:
    """GB 32100-2015 as printed in the standard, written independently of the module."""
    weights = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, weights, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def reference_org_check_char(first8: str) -> str:
    """GB 11714-1997 check character of a 组织机构代码."""
    value = 11 - sum(int(c, 36) * w for c, w in zip(first8, [3, 7, 9, 10, 5, 8, 4, 2], strict=True)) % 11
    return {10: "X", 11: "0"}.get(value, str(value))


def has_chinese(text: str) -> bool:
    return bool(re.search(r"[\u4e00-\u9fff]", text))


def check_char_warnings(check: TaxIdCheck) -> list[str]:
    return [w for w in check.warnings if w.startswith("校验位")]


VALID_USCC = [
    "91110000600037341L",
    "911101017967003199",
    "91320621MA1MRHG205",
    "91230184MA1BUFLT44",
    "92371000MA3MXH0E3W",
    "91350100M000100Y43",
    "52310106751466629W",
    "123502001549897397",
    "91110108551385082Q",
    "9144030071526726XG",
    "914403001922038216",
    "91330100716105852F",
    "91110108MA01ABCD5T",
    "Y1110108MA0000007A",
    "N2110108MA0000015A",
]


@pytest.mark.parametrize("code", VALID_USCC)
def test_valid_uscc(code):
    assert check_taxpayer_id(code) == TaxIdCheck(value=code, kind="uscc", ok=True, problem=None, warnings=())
    assert uscc_check_char(code[:17]) == code[17]


@pytest.mark.parametrize(("code", "expected"), [("91320621MA1MRHG207", "5"), ("91310115MA1H8R7C6D", "7")])
def test_wrong_check_char_is_a_soft_warning_naming_the_expected_char(code, expected):
    check = check_taxpayer_id(code)
    assert check.ok and check.kind == "uscc" and check.problem is None
    assert check_char_warnings(check) == [
        f"校验位与计算结果不符（应为 {expected}），请再核对一下；个别早期代码也会出现这种情况"
    ]


def test_standard_worked_example():
    assert uscc_check_char("91350100M000100Y4") == "3"


@pytest.mark.parametrize(
    "code", ["91350100M0001TGQXM", "91350211M0000XUF46", "91350203M0001FUE2P", "91350203M0001QAY9B"]
)
def test_real_early_codes_failing_the_check_are_usable_with_one_warning(code):
    check = check_taxpayer_id(code)
    assert check.ok and check.problem is None and check.kind == "uscc"
    assert len(check.warnings) == 1 and "早期" in check.warnings[0]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("91110108MA01ABCD5", "统一社会信用代码应为18位，您发送的是17位"),
        ("91110108MA01ABCD5TT", "统一社会信用代码应为18位，您发送的是19位"),
        ("91110108551385082", "统一社会信用代码应为18位，您发送的是17位"),
        ("11010855138508212", "统一社会信用代码应为18位，您发送的是17位"),  # not 身份证号 + 2 digits: no birth date
        ("11010819900101123", "统一社会信用代码应为18位，您发送的是17位"),
        ("11010100000000000001", "统一社会信用代码应为18位，您发送的是20位"),  # no birth date at 7-14
        ("9111#@!$%^&0108", "税号只能由数字和英文字母组成，不能包含“#”、“@”、“!”、“$”、“%”等"),
        ("9111 0108 MA01 ABCD", "统一社会信用代码应为18位，您发送的是16位"),
        ("91110108MA0OABCD5T", "税号中不能包含字母 I、O、Z、S、V（发现：O）"),
        ("91110108ma0oabcd5t", "税号中不能包含字母 I、O、Z、S、V（发现：O）"),
        ("9111010SMA0IABCD5T", "税号中不能包含字母 I、O、Z、S、V（发现：S、I）"),
        ("91110108MA0OABCD5", "统一社会信用代码应为18位，您发送的是17位；税号中不能包含字母 I、O、Z、S、V（发现：O）"),
        ("9111010855138508.2Q", "税号只能由数字和英文字母组成，不能包含“.”"),
        ("91110108MA01ABCD5T。", "税号只能由数字和英文字母组成，不能包含“。”"),
        ("91110108#MA01@ABCD5T", "税号只能由数字和英文字母组成，不能包含“#”、“@”"),
        ("123456", "税号应为15至20位（统一社会信用代码为18位），您发送的是6位"),
        ("1" * 22, "统一社会信用代码应为18位，您发送的是22位"),
        ("ABCDEFGHJK", "税号应为15至20位（统一社会信用代码为18位），您发送的是10位"),
        ("91350100M000100Y4Z", "税号中不能包含字母 I、O、Z、S、V（发现：Z）；第18位校验位按计算应为 3"),
    ],
)
def test_unusable_taxpayer_ids_say_exactly_what_is_wrong(text, problem):
    check = check_taxpayer_id(text)
    assert not check.ok
    assert check.problem == problem


@pytest.mark.parametrize("text", ["", "   ", "- -"])
def test_empty_taxpayer_id(text):
    check = check_taxpayer_id(text)
    assert not check.ok and "没有收到税号" in check.problem


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("91110108ma01abcd5t", "91110108MA01ABCD5T"),
        ("9111 0108 MA01 ABCD 5T", "91110108MA01ABCD5T"),
        ("9111-0108-MA01-ABCD-5T", "91110108MA01ABCD5T"),
        ("９１１１０１０８ＭＡ０１ＡＢＣＤ５Ｔ", "91110108MA01ABCD5T"),
        ("９１１１０１０８ｍａ０１ａｂｃｄ５ｔ", "91110108MA01ABCD5T"),
        (" 91110108MA01ABCD5T\n", "91110108MA01ABCD5T"),
        ("91110108\u3000MA01ABCD5T", "91110108MA01ABCD5T"),
        ("91110108—MA01ABCD5T", "91110108MA01ABCD5T"),
    ],
)
def test_taxpayer_id_is_normalised(text, value):
    assert check_taxpayer_id(text) == check_taxpayer_id(value)
    assert check_taxpayer_id(text).value == value and check_taxpayer_id(text).ok


def with_check(body: str) -> str:
    return body + reference_check_char(body)


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        (with_check("01110108MA01ABCD5"), "第1位“0”不是已知的登记管理部门代码"),
        (with_check("9A110108MA01ABCD5"), "第2位机构类别代码“A”与登记管理部门“9”"),
        (with_check("Y2110108MA0000007"), "第2位机构类别代码“2”与登记管理部门“Y”"),
        (with_check("9199A108MA01ABCD5"), "第3-8位应为6位数字的行政区划码"),
        (with_check("91990108MA01ABCD5"), "第3-8位“990108”不是已知的行政区划码"),
        (with_check("91110108MA01ABCD6"), "第9-17位组织机构代码的校验位与计算结果不符（应为 5）"),
    ],
)
def test_uscc_structure_warnings(code, fragment):
    check = check_taxpayer_id(code)
    assert check.ok and check.kind == "uscc"
    assert check_char_warnings(check) == []
    assert any(fragment in w for w in check.warnings), check.warnings


def test_central_level_region_is_known():
    assert check_taxpayer_id(with_check("11100000MA01ABCD5")).warnings == ()


@pytest.mark.parametrize("code", [c for c in VALID_USCC if c[2:8].isdigit()])
def test_legacy_id_is_usually_the_middle_of_the_uscc(code):
    assert check_taxpayer_id(code[2:17]) == TaxIdCheck(code[2:17], "legacy15", True, None, ())


@pytest.mark.parametrize(
    ("text", "kind", "warning"),
    [
        ("110108551385082", "legacy15", None),
        ("110108551385083", "legacy15", "第7-15位组织机构代码的校验位与计算结果不符（应为 2）"),
        ("110108900101123", "legacy15", None),  # an old 15-digit 身份证号
        ("11010890010112301", "other", None),  # 15-digit 身份证号 + 2 digits
        ("11010119900307123X01", "other", None),  # 18-digit 身份证号 + 2 digits
        ("ABCDEFGH12345678", "other", "不是常见的税号格式"),
        ("ABCDEFGH1234567", "other", "不是常见的税号格式"),
    ],
)
def test_other_taxpayer_ids(text, kind, warning):
    check = check_taxpayer_id(text)
    assert check.ok and check.kind == kind and check.problem is None
    if warning is None:
        assert check.warnings == ()
    else:
        assert len(check.warnings) == 1 and warning in check.warnings[0]


def test_uscc_check_char_rejects_bad_bodies():
    for body in ["9111010855138508", "91110108MA01ABCDO", "91110108MA01ABCD5T", ""]:
        with pytest.raises(ValueError):
            uscc_check_char(body)
    assert uscc_check_char("91110108ma01abcd5") == "T"


# --- finding a taxpayer id in a message --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我的税号是 91110108MA01ABCD5T 绑定码 123456", "91110108MA01ABCD5T"),
        ("绑定码123456，税号91110108MA01ABCD5T", "91110108MA01ABCD5T"),
        ("税号：91110108ma01abcd5t", "91110108MA01ABCD5T"),
        ("税号 9111 0108 MA01 ABCD 5T 谢谢", "91110108MA01ABCD5T"),
        ("税号 9111-0108-MA01-ABCD-5T 123456", "91110108MA01ABCD5T"),
        ("税号是９１１１０１０８ＭＡ０１ＡＢＣＤ５Ｔ", "91110108MA01ABCD5T"),
        ("tax id: 91110108MA01ABCD5T code 123456", "91110108MA01ABCD5T"),
        (f"发票号码{NUMBER}，销方税号91110108MA01ABCD5T", "91110108MA01ABCD5T"),
        ("税号91350100M0001TGQXM", "91350100M0001TGQXM"),  # real, fails the check
        ("税号 9135 0100 M000 1TGQ XM", "91350100M0001TGQXM"),
        ("税号123502001549897397", "123502001549897397"),
        ("老税号110108551385082", "110108551385082"),
        ("先是91110108MA01ABCD5T，后是91110108551385082Q", "91110108MA01ABCD5T"),
        ("91110108MA01ABCD5T 12345678", "91110108MA01ABCD5T"),  # taxpayer id + 8-digit binding code
        ("12345678 91110108MA01ABCD5T", "91110108MA01ABCD5T"),
        ("110108551385082 12345678", "110108551385082"),
    ],
)
def test_find_taxpayer_id(text, expected):
    assert find_taxpayer_id(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "绑定码 123456",
        NUMBER,
        f"发票号码 {NUMBER}",
        "23112019900101123456",  # a 数电票 number that also looks like an id-based taxpayer id
        "发票代码 011001800604 号码 12345678",
        "1100191130 12345678",
        "订单号202506011234567890",
        "银行卡 6222021234567890123",
        "身份证 11010119900307123X",
        "手机 13800138000",
        "123456789012345678",  # 18 digits failing the check
        "123502001549897390",  # all digits, wrong check char: a typo or another number
        "91110108MA0OABCD5T",
        "91110108MA01ABCD5",
        "",
        "你好",
    ],
)
def test_find_taxpayer_id_ignores_other_numbers(text):
    assert find_taxpayer_id(text) is None


@pytest.mark.parametrize(
    "text",
    ["我的税号是91110108MA01ABCD5T", "税号 91350100M0001TGQXM", "税号 9111 0108 MA01 ABCD 5T", "92371000MA3MXH0E3W"],
)
def test_taxpayer_id_is_not_read_as_an_invoice_number(text):
    assert scan(text) is None


def test_taxpayer_id_next_to_an_invoice_number():
    assert_digital(f"税号91110108MA01ABCD5T，发票号码{NUMBER}", NUMBER)


# --- properties: taxpayer ids --------------------------------------------------------------------------------

PROPERTY = settings(max_examples=300, deadline=None, database=None)
KNOWN_CATEGORIES = [
    (d, c) for d, cs in {"1": "1239", "5": "1239", "9": "123", "N": "1239", "Y": "1"}.items() for c in cs
]

uscc_char = st.sampled_from(USCC_ALPHABET)
uscc_body = st.text(alphabet=USCC_ALPHABET, min_size=17, max_size=17)


@st.composite
def valid_usccs(draw) -> str:
    """A well-formed code: known department/category and region, correct 组织机构代码 and GB 32100 check chars."""
    department, category = draw(
        st.one_of(st.sampled_from(KNOWN_CATEGORIES), st.tuples(st.sampled_from("234678A"), uscc_char))
    )
    region = draw(st.sampled_from([*PROVINCES, "10"])) + draw(digit_string(4))
    org = draw(st.text(alphabet=USCC_ALPHABET, min_size=8, max_size=8))
    body = department + category + region + org + reference_org_check_char(org)
    return body + reference_check_char(body)


@PROPERTY
@given(body=uscc_body)
def test_property_check_char_matches_the_standard(body):
    assert uscc_check_char(body) == reference_check_char(body)
    check = check_taxpayer_id(body + uscc_check_char(body))
    assert check.ok and check.kind == "uscc"
    assert check_char_warnings(check) == []


@PROPERTY
@given(code=valid_usccs())
def test_property_well_formed_uscc_passes_without_warnings(code):
    assert check_taxpayer_id(code) == TaxIdCheck(code, "uscc", True, None, ())


@PROPERTY
@given(code=valid_usccs(), data=st.data())
def test_property_any_single_substitution_is_detected(code, data):
    # Weights 3^(i-1) mod 31 are non-zero and 31 is prime, so any change of one character changes the sum mod 31.
    position = data.draw(st.integers(min_value=0, max_value=17))
    replacement = data.draw(uscc_char.filter(lambda c: c != code[position]))
    changed = code[:position] + replacement + code[position + 1 :]
    check = check_taxpayer_id(changed)
    assert check.ok
    assert len(check_char_warnings(check)) == 1


@PROPERTY
@given(code=valid_usccs(), data=st.data())
def test_property_any_adjacent_transposition_is_detected(code, data):
    # Neighbouring weights differ (3^i != 3^(i+1) mod 31, and 28 != 1 for the check char), so swaps are caught too.
    position = data.draw(st.integers(min_value=0, max_value=16).filter(lambda i: code[i] != code[i + 1]))
    swapped = code[:position] + code[position + 1] + code[position] + code[position + 2 :]
    assert len(check_char_warnings(check_taxpayer_id(swapped))) == 1


@st.composite
def messy(draw, value: str) -> str:
    """The id as typed: lower-case or full-width characters, spaces and dashes in between."""
    separators = st.sampled_from(["", "", "", " ", "-", "　", " - ", "－"])
    out = []
    for i, ch in enumerate(value):
        if i:
            out.append(draw(separators))
        style = draw(st.sampled_from(["plain", "lower", "full", "full_lower"]))
        if style in ("lower", "full_lower"):
            ch = ch.lower()
        if style in ("full", "full_lower"):
            ch = chr(ord(ch) + 0xFEE0)
        out.append(ch)
    return "".join(out)


@PROPERTY
@given(
    data=st.data(),
    value=st.one_of(valid_usccs(), st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", max_size=24)),
)
def test_property_typing_variants_give_the_same_result(data, value):
    assert check_taxpayer_id(data.draw(messy(value))) == check_taxpayer_id(value)


@PROPERTY
@given(code=valid_usccs(), before=chinese_filler, after=chinese_filler, binding=digit_string(6))
def test_property_uscc_found_in_a_message(code, before, after, binding):
    assert find_taxpayer_id(f"{before}{code}{after}绑定码{binding}") == code


@PROPERTY
@given(code=valid_usccs().filter(lambda c: not c.isdigit()), before=chinese_filler, after=chinese_filler)
def test_property_uscc_with_letters_is_never_an_invoice_number(code, before, after):
    assert scan(f"{before}{code}{after}") is None


@PROPERTY
@given(text=st.text())
def test_property_taxpayer_functions_never_raise(text):
    check = check_taxpayer_id(text)
    assert check.ok == (check.problem is None)
    if not check.ok:
        assert has_chinese(check.problem)
    assert all(has_chinese(w) for w in check.warnings)
    found_id = find_taxpayer_id(text)
    if found_id is not None:
        assert check_taxpayer_id(found_id).ok
        assert 15 <= len(found_id) <= 20


@PROPERTY
@given(text=st.text(alphabet=st.sampled_from("0123456789 -ABIOSZVaio。，税号发票")))
def test_property_taxpayer_functions_on_id_like_text(text):
    check = check_taxpayer_id(text)
    assert check.ok or has_chinese(check.problem)
    found_id = find_taxpayer_id(text)
    assert found_id is None or (check_taxpayer_id(found_id).ok and not _is_invoice_number(found_id))
    result = scan(text)
    assert result is None or result.ref is not None or has_chinese(result.problem)


def _is_invoice_number(value: str) -> bool:
    return value.isdigit() and len(value) == 20 and value.startswith("2")


# --- properties: decoding --------------------------------------------------------------------------------


@PROPERTY
@given(data=st.data(), number=digital_numbers())
def test_property_digital_number_decodes_the_same_however_pasted(data, number):
    info = decode_digital_number(number)
    assert decode_digital_number(data.draw(pasted(number))) == info
    assert info.year == 2000 + int(number[:2])
    assert info.region_code == number[2:4] and info.region is not None
    assert info.channel == number[4]
    assert InvoiceRef(number=number).describe() == f"数电票（{info.year}年，{info.region}）"


@PROPERTY
@given(code=st.one_of(digit_string(10), digit_string(12)))
def test_property_any_code_decodes(code):
    info = decode_invoice_code(code)
    assert info.code == code
    assert len(info.region_code) == 4 and 1900 < info.year < 2100
    assert has_chinese(info.invoice_type)
    assert (info.region is None) == bool(info.warnings)
    assert has_chinese(InvoiceRef(code=code, number="12345678").describe())
