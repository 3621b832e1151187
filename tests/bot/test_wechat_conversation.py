"""Conversations as merchants really write them, through the WeChat adapter: signed text pushes from one openid to
/wechat and the passive replies they get, with options as the numbered lines the merchant sees."""

import itertools
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from bot.channels.wechat import render
from core.database import session_scope
from tests.bot.test_wechat import full_app, post, reply_content, set_wechat_env, text_push
from ticketing.models import Ticket

TICKET = re.compile(r"工单 (T[\w-]+)")


class WeChatChat:
    """One merchant (the tests' openid) writing to the official account."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.ids = itertools.count(7000)

    def say(self, text: str) -> str:
        """What the merchant sees in reply to a text message."""
        return reply_content(post(self.client, text_push(text, msg_id=next(self.ids))))


@pytest.fixture
def wechat(app_env, monkeypatch) -> Iterator[WeChatChat]:
    set_wechat_env(monkeypatch, WECHAT_REPLY_BUDGET_SECONDS="4.0")
    with TestClient(full_app()) as client:
        yield WeChatChat(client)


def tickets() -> int:
    with session_scope() as db_session:
        return db_session.scalar(select(func.count()).select_from(Ticket))


def numbered(*labels: str) -> str:
    """Options as WeChat shows them."""
    return "\n".join(f"{n}. {label}" for n, label in enumerate(labels, 1))


def test_small_talk_gets_a_short_reply_and_never_a_ticket(wechat):
    for text in ["谢谢", "好的", "好的 谢谢", "ok", "xiexie", "haode", "谢谢啦", "好的"]:
        reply = wechat.say(text)
        assert len(reply) <= 40 and render.CHOOSE_HINT not in reply, text
        assert "人工" not in reply and "工单" not in reply, text
    assert tickets() == 0


def test_a_nudge_after_a_handoff_is_acknowledged_with_the_ticket_number(wechat):
    handed = wechat.say("转人工")
    number = TICKET.search(handed).group(1)
    nudge = wechat.say("有人吗")
    assert number in nudge and "已收到" in nudge
    assert tickets() == 1


@pytest.mark.parametrize("text", ["找个懂行的人", "让你们经理回电话", "zhuan rengong"])
def test_handoff_phrasings_open_a_ticket(wechat, text):
    reply = wechat.say(text)
    assert "转接人工客服" in reply and TICKET.search(reply)
    assert tickets() == 1


def test_an_answer_in_words_advances_the_guide(wechat):
    asked = wechat.say("发票查询提示未找到相关记录")
    assert "刚刚才开的吗" in asked and numbered("是，刚开完就查不到", "不是，之前开的") in asked
    onward = wechat.say("不是，上个月开的")
    assert "开票日期范围" in onward and "刚刚才开的吗" not in onward
    assert numbered("包含", "不包含或不确定") in onward and onward.endswith(render.CHOOSE_HINT)


def test_a_pasted_taxpayer_id_is_checked(wechat):
    wechat.say("开票提示购买方税号不正确")
    asked = wechat.say("企业")
    assert "几位" in asked
    options = asked[asked.index("\n1. ") :]
    wrong = wechat.say("91110108MAO1ABCD5T")
    assert "不能包含字母" in wrong and "几位" in wrong and wrong.endswith(options)
    right = wechat.say("税号是 91110108MA01ABCD5T")
    assert "91110108MA01ABCD5T" in right and "营业执照上的代码逐位核对" in right
    assert tickets() == 0


def test_still_not_working_after_an_answer_stays_on_the_topic(wechat):
    answer = wechat.say("电子普票开错了怎么作废")
    assert numbered("有帮助", "没解决") in answer
    reply = wechat.say("还是不行")
    assert reply.startswith("也可能是另一种情况") and "作废" in reply and numbered("有帮助", "没解决") in reply
    for _ in range(5):  # each further "还是不行" tries the next way the question may be meant, then offers a person
        if "办法就是这些" in reply:
            break
        reply = wechat.say("还是不行")
    assert "办法就是这些" in reply and "1. 转人工客服" in reply
    assert tickets() == 0
    assert TICKET.search(wechat.say("1"))


@pytest.mark.parametrize("hello", ["你好", "nihao"])
def test_a_greeting_inside_a_guide_greets_and_repeats_the_question(wechat, hello):
    first = wechat.say("开票提示服务器繁忙")
    question = numbered("点了提交开票之后", "登录或打开页面时", "查询或下载发票时")
    assert "在哪一步出现" in first and question in first
    reply = wechat.say(hello)
    assert reply.startswith("您好！") and "在哪一步出现" in reply and question in reply
