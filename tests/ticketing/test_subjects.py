"""A ticket's subject is the merchant's question, never a greeting, a binding command or a bare request for a
person, and never shows a binding code, taxpayer id or phone number."""

import pytest

from ticketing import subjects


@pytest.mark.parametrize(
    "text",
    [
        "你好",
        "在吗？",
        "绑定 91110108MA01ABCD5T 12345678",
        "我要绑定企业",
        "转人工",
        "我要转人工客服",
        "人工！",
        "客服你好",
        "intent:handoff",
        "faq:busy_server",
        "2",
        "谢谢",
        "好的",
        "有人吗",
        "找你们领导",
        "给我回个电话",
    ],
)
def test_messages_that_state_no_problem_give_no_subject(text):
    assert subjects.question(text) == ""


@pytest.mark.parametrize(
    ("text", "asked"),
    [
        ("转人工，发票开不出来", "发票开不出来"),
        ("我要人工客服 数电票怎么红冲", "数电票怎么红冲"),
        ("开票提示服务器繁忙", "开票提示服务器繁忙"),
        ("你好，我想开发票", "你好，我想开发票"),
        ("我要投诉，发票三天没开出来", "我要投诉，发票三天没开出来"),
    ],
)
def test_the_question_is_kept(text, asked):
    assert subjects.question(text) == asked


def test_the_first_message_with_a_question_is_the_subject_masked():
    lines = [
        ("你好", "greeting"),
        ("91110108MA01ABCD5T 12345678", "binding"),
        ("1", None),
        ("税号91110108MA01ABCD5T开票失败，电话13812345678", "answer"),
        ("另一个问题", "answer"),
    ]
    subject = subjects.pick(lines)
    assert subject.startswith("税号9111") and "开票失败" in subject
    assert "91110108MA01ABCD5T" not in subject and "13812345678" not in subject


def test_what_the_bot_learned_wins():
    assert subjects.pick([("开票失败", "answer")], {"title": "提示“服务器繁忙”"}) == "提示“服务器繁忙”"
