"""How the bot talks with merchants, through POST /api/chat and WeChat: small talk gets a short reply and never a
ticket, off-topic chatter only offers a person, in-domain misses do hand off, and while a person has the conversation
the merchant hears now and then that staff will see the messages."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from bot.app import create_app
from core.database import session_scope
from handlers import human
from tests.bot.test_wechat import full_app, is_ack, post, reply_content, set_wechat_env, text_push
from ticketing import assignment, lifecycle, replies, staff
from ticketing import service as tickets
from ticketing.models import RESOLVED, Ticket


class Clock:
    """The wall clock of the human-mode acknowledgements, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(human, "clock", fake)
    return fake


@pytest.fixture
def client(app_env, api_caller, monkeypatch):
    monkeypatch.setenv("HUMAN_ACK_SECONDS", "180")
    monkeypatch.setenv("HUMAN_NUDGE_ACK_SECONDS", "30")
    with TestClient(create_app(), headers=api_caller.headers) as test_client:
        yield test_client


def chat(client, text: str, user: str = "talker") -> dict:
    response = client.post("/api/chat", json={"user_id": user, "text": text})
    assert response.status_code == 200, response.text
    return response.json()


def all_tickets() -> list[Ticket]:
    with session_scope() as db_session:
        rows = list(db_session.scalars(select(Ticket)))
        for row in rows:
            db_session.expunge(row)
        return rows


def merchant_lines(ticket_id: int) -> list[str]:
    with session_scope() as db_session:
        messages = tickets.get_messages(db_session=db_session, ticket_id=ticket_id)
        return [m.text for m in messages if m.author_kind == "merchant"]


# --- small talk ---


def test_small_talk_gets_a_short_reply_without_a_menu_or_a_ticket(client):
    assert chat(client, "您好😊")["intent"] == "greeting"
    for text in ("好的", "明白了，谢谢", "收到", "ok", "哈哈", "hhh", "👍", "你是机器人吗", "你是谁", "拜拜"):
        body = chat(client, text)
        assert body["intent"] == "smalltalk", (text, body)
        assert body["options"] == [] and len(body["text"]) <= 80, "a short natural reply, no menu"
    assert "不客气" in chat(client, "谢谢")["text"]
    assert "再见" in chat(client, "再见")["text"]
    assert "机器人" in chat(client, "你是机器人吗")["text"]
    assert all_tickets() == []


def test_small_talk_never_counts_as_a_miss(client):
    for _ in range(4):
        assert chat(client, "谢谢")["intent"] == "smalltalk"
        assert chat(client, "哈哈")["intent"] == "smalltalk"
    assert all_tickets() == []


def test_thanks_during_a_guide_keeps_its_question(client):
    started = chat(client, "开票提示服务器繁忙")
    assert started["intent"] == "guide" and started["options"]
    thanked = chat(client, "谢谢")
    assert thanked["intent"] == "guide" and thanked["text"].startswith("不客气")
    assert [o["label"] for o in thanked["options"]] == [o["label"] for o in started["options"]]


# --- misses and off-topic chatter ---


def test_off_topic_chatter_offers_a_person_and_only_the_merchants_wish_opens_a_ticket(client):
    for text in ("明天深圳下雨不", "讲个笑话", "今天天气怎么样", "股票明天会涨吗"):
        body = chat(client, text)
        assert body["intent"] == "fallback" and "转人工" in body["text"], body
        assert "intent:handoff" in [o["payload"] for o in body["options"]]
    assert all_tickets() == []
    assert chat(client, "找个真人跟我说")["intent"] == "handoff"
    assert len(all_tickets()) == 1


def test_repeated_in_domain_misses_hand_off_unless_something_was_understood_between(client):
    assert chat(client, "税控盘外壳发烫正常吗")["intent"] == "fallback"
    assert chat(client, "好的")["intent"] == "smalltalk"
    assert chat(client, "发票邮寄的信封用什么颜色")["intent"] == "fallback", "the small talk reset the count"
    assert chat(client, "发票数电票怎么红冲")["intent"] in ("answer", "guide")
    assert chat(client, "税控盘外壳发烫正常吗")["intent"] == "fallback", "the answer reset the count"
    handed = chat(client, "发票邮寄的信封用什么颜色")
    assert handed["intent"] == "handoff" and "转接人工" in handed["text"]
    assert len(all_tickets()) == 1


# --- asking for a person, as people ask ---


@pytest.mark.parametrize(
    "text", ["有没有懂行的", "找你们领导", "给我回个电话", "机器人不行", "你们客服呢", "投诉", "叫你们经理来跟我说"]
)
def test_the_many_ways_of_asking_for_a_person_open_a_ticket(client, text):
    body = chat(client, text)
    assert body["intent"] == "handoff" and body["options"] == []
    (ticket,) = all_tickets()
    assert ticket.number in body["text"]


@pytest.mark.parametrize("text", ["人工开票怎么操作", "客户投诉发票开错了怎么红冲", "我们经理让我问一下专票怎么开"])
def test_in_domain_questions_with_person_words_are_not_handoffs(client, text):
    assert chat(client, text)["intent"] != "handoff"
    assert all_tickets() == []


# --- while a person has the conversation ---


def test_no_stale_guide_option_after_a_handoff(client):
    assert chat(client, "开票提示服务器繁忙")["intent"] == "guide"
    paused = chat(client, "税控盘外壳发烫正常吗")  # leaves the guide: it pauses and is offered for resuming
    assert "guide:resume" in [o["payload"] for o in paused["options"]]
    handed = chat(client, "发票邮寄的信封用什么颜色")  # the second miss hands off
    assert handed["intent"] == "handoff"
    assert handed["options"] == [] and "继续刚才的排查" not in handed["text"]
    assert chat(client, "继续")["intent"] == "human", "a person has it now; nothing resumes the guide"


def test_messages_to_a_person_are_acknowledged_now_and_then(client, clock):
    handed = chat(client, "转人工")
    assert handed["intent"] == "handoff" and handed["options"] == []
    (ticket,) = all_tickets()
    said = ["发票号码 25112000000012345678 一直查不到", "截图里写的是 额度不足"]
    for text in said:
        body = chat(client, text)
        assert (body["intent"], body["text"], body["options"]) == ("human", "", []), "just told: no reply"
    clock.now += 10
    nudged = chat(client, "有人吗")
    assert ticket.number in nudged["text"] and "客服" in nudged["text"], "the first 有人吗 is never met with silence"
    assert "工作时间" in nudged["text"] or "回复" in nudged["text"], "when to expect an answer"
    assert chat(client, "人呢")["text"] == "", "nudges too are rate-limited"
    clock.now += 31
    assert ticket.number in chat(client, "转人工")["text"], "asking again is always acknowledged"
    clock.now += 60
    assert chat(client, "还有一张票也是这样")["text"] == "", "within HUMAN_ACK_SECONDS of the last acknowledgement"
    clock.now += 200
    later = chat(client, "税号是 91310000MA1K000000")
    assert later["intent"] == "human" and ticket.number in later["text"]
    lines = merchant_lines(ticket.id)
    for text in [*said, "有人吗", "人呢", "转人工", "还有一张票也是这样", "税号是 91310000MA1K000000"]:
        assert text in lines, f"every message reaches the ticket: {text}"
    assert len(all_tickets()) == 1


def test_small_talk_while_a_person_has_it_goes_to_the_ticket(client, clock):
    chat(client, "转人工")
    (ticket,) = all_tickets()
    assert chat(client, "谢谢")["text"] == ""
    assert "谢谢" in merchant_lines(ticket.id)


def test_thanks_after_the_rating_is_logged_and_neither_reopens_the_ticket_nor_restarts_its_clocks(client, clock):
    chat(client, "转人工")
    (ticket,) = all_tickets()
    with session_scope() as db_session:
        agent = staff.create(db_session=db_session, username="alice", password="correct horse", role="agent")
        assignment.take(db_session=db_session, ticket_id=ticket.id, agent_id=agent.id)
        lifecycle.resolve(db_session=db_session, ticket_id=ticket.id, actor_id=agent.id)
    assert chat(client, "5")["text"] == replies.CSAT_THANKS
    (rated,) = all_tickets()
    for text in ("谢谢", "好的谢谢", "👍", "好的 谢谢您", "👍👍"):
        assert chat(client, text)["text"], f"{text}: a short reply"
        (now,) = all_tickets()
        assert (now.state, now.reopened_count, now.sla_started_at) == (RESOLVED, 0, rated.sla_started_at), text
        assert text in merchant_lines(ticket.id), f"{text}: logged to the conversation"
    assert "重新打开" in chat(client, "好的，那红字发票怎么开")["text"], "a real question still reopens it"
    (reopened,) = all_tickets()
    assert (reopened.state, reopened.reopened_count) != (RESOLVED, 0)


# --- the same through WeChat ---


def test_wechat_conversation_small_talk_handoff_and_acknowledgements(app_env, monkeypatch, clock):
    set_wechat_env(monkeypatch, WECHAT_REPLY_BUDGET_SECONDS="4.0")
    ids = iter(range(7000, 7100))
    with TestClient(full_app()) as client:

        def say(text: str):
            return post(client, text_push(text, msg_id=next(ids)))

        assert "发票助手" in reply_content(say("早上好呀☀️"))
        assert "不客气" in reply_content(say("好的 谢谢啦"))
        assert "转人工" in reply_content(say("明天深圳下雨不"))
        assert all_tickets() == []
        handed = reply_content(say("能不能直接打电话给我 打字说不清楚"))
        (ticket,) = all_tickets()
        assert ticket.number in handed and "继续刚才的排查" not in handed
        assert is_ack(say("发票一直开不出来")), "just told: the bot is silent"
        clock.now += 31
        assert ticket.number in reply_content(say("人呢"))
        assert is_ack(say("在吗"))
        clock.now += 181
        assert ticket.number in reply_content(say("客户催了"))
        assert {"发票一直开不出来", "人呢", "在吗", "客户催了"} <= set(merchant_lines(ticket.id))
