"""Handing a conversation to people: the ticket, the silent bot while a person has it, ending it, and the rating."""

import pytest
from sqlalchemy import select

from bot.bootstrap import prepare_database
from core.database import session_scope
from core.messages import IncomingMessage
from core.outbox.models import OutboxMessage
from core.store import MemoryStore
from handlers.router import make_router
from ticketing import lifecycle, replies, staff
from ticketing import service as tickets
from ticketing.models import Ticket


@pytest.fixture
def router(app_env):
    prepare_database()
    return make_router(store=MemoryStore())


def say(router, text: str, user: str = "m1", channel: str = "telegram"):
    with session_scope() as db_session:
        return router.handle(IncomingMessage(channel=channel, user_id=user, text=text), db_session=db_session)


def only_ticket() -> Ticket:
    with session_scope() as db_session:
        rows = list(db_session.scalars(select(Ticket)))
        assert len(rows) == 1, f"expected one ticket, found {len(rows)}"
        db_session.expunge(rows[0])
        return rows[0]


def transcript(ticket_id: int) -> list[tuple[str, str]]:
    with session_scope() as db_session:
        return [(m.author_kind, m.text) for m in tickets.get_messages(db_session=db_session, ticket_id=ticket_id)]


def outbox_texts(recipient: str = "m1") -> list[str]:
    with session_scope() as db_session:
        query = select(OutboxMessage).where(OutboxMessage.recipient == recipient).order_by(OutboxMessage.id)
        return [m.payload["text"] for m in db_session.scalars(query)]


def test_asking_for_a_person_opens_a_ticket_with_the_conversation(router):
    say(router, "开票提示服务器繁忙")
    reply = say(router, "转人工")
    ticket = only_ticket()
    assert reply.intent == "handoff"
    assert ticket.number in reply.text and ("工作时间" in reply.text or "回复" in reply.text)
    texts = [text for _, text in transcript(ticket.id)]
    assert "开票提示服务器繁忙" in texts and "转人工" in texts, "the agent sees the whole story"


def test_while_a_person_has_it_the_bot_is_silent_and_messages_reach_the_ticket(router):
    say(router, "转人工")
    ticket = only_ticket()
    reply = say(router, "发票号码 25112000000012345678 一直查不到")
    assert reply.silent and reply.intent == "human"
    assert ("merchant", "发票号码 25112000000012345678 一直查不到") in transcript(ticket.id)
    assert say(router, "你好").silent, "even a greeting goes to the person"


def test_the_merchant_can_end_the_human_conversation(router):
    say(router, "转人工")
    ended = say(router, "结束")
    assert "已结束人工服务" in ended.text and not ended.silent
    assert only_ticket().state == "closed"
    assert say(router, "你好").intent == "greeting", "the bot answers again"


def test_a_complaint_is_urgent(router):
    say(router, "我要投诉你们，发票三天都开不出来")
    assert only_ticket().priority == "urgent"


def test_two_in_domain_misses_in_a_row_hand_off(router):
    first = say(router, "税控盘外壳发烫正常吗")
    assert first.intent == "fallback"
    second = say(router, "发票邮寄的信封用什么颜色")
    assert second.intent == "handoff" and "转接人工" in second.text
    assert only_ticket().state == "new"


def test_off_topic_chatter_offers_a_person_but_opens_no_ticket(router):
    for text in ("今天天气怎么样", "明天下雨吗", "讲个笑话", "股票明天会涨吗"):
        reply = say(router, text)
        assert reply.intent == "fallback" and "转人工" in reply.text, text
        assert "intent:handoff" in [o.payload for o in reply.options]
    with session_scope() as db_session:
        assert db_session.scalar(select(Ticket)) is None


@pytest.mark.parametrize("between", ["谢谢", "好的", "哈哈", "你好", "开票提示服务器繁忙"])
def test_an_understood_turn_between_two_misses_starts_the_count_again(router, between):
    assert say(router, "税控盘外壳发烫正常吗").intent == "fallback"
    assert say(router, between).intent != "fallback"
    third = say(router, "发票邮寄的信封用什么颜色")
    assert third.intent != "handoff", "the understood turn reset the miss count"


def test_a_guide_that_ends_in_handoff_carries_what_was_learned(router):
    started = say(router, "开票提示服务器繁忙")
    assert started.intent == "guide"
    say(router, "1")
    reply = say(router, "转人工")
    assert reply.intent == "handoff" and "已为客服记录" in reply.text
    context = only_ticket().context
    assert context.get("topic") == "busy_server" or "busy_server" in str(context)
    assert "learned" in context or "guide" in context


def test_agent_reply_resolve_and_rating(router):
    say(router, "转人工")
    ticket = only_ticket()
    with session_scope() as db_session:
        agent = staff.create(db_session=db_session, username="li", password="correct horse battery", role="agent")
        agent_id = agent.id
    with session_scope() as db_session:
        replies.send(db_session=db_session, ticket_id=ticket.id, agent_id=agent_id, text="您好，我来帮您看看。")
    assert outbox_texts()[-1] == "您好，我来帮您看看。"
    with session_scope() as db_session:
        lifecycle.resolve(db_session=db_session, ticket_id=ticket.id, actor_id=agent_id)
    assert "1-5" in outbox_texts()[-1] or "打分" in outbox_texts()[-1]
    thanks = say(router, "5")
    assert not thanks.silent and thanks.intent == "human"
    assert only_ticket().csat_score == 5


def test_staff_can_hand_the_conversation_back(router):
    say(router, "转人工")
    with session_scope() as db_session:
        agent_id = staff.create(db_session=db_session, username="li", password="correct horse battery").id
    with session_scope() as db_session:
        replies.send(db_session=db_session, ticket_id=only_ticket().id, agent_id=agent_id, text="已为您处理好。")
        lifecycle.hand_back_to_bot(db_session=db_session, ticket_id=only_ticket().id)
    assert outbox_texts()[-1] == lifecycle.HANDED_BACK_NOTICE, "the merchant is told the bot is back"
    assert say(router, "你好").intent == "greeting"


def test_triage_never_opens_tickets(router):
    from bot.triage import make_triage_router, triage_one

    row = triage_one(make_triage_router(), "转人工", 1)
    assert row["action"] == "handoff"
    with session_scope() as db_session:
        assert list(db_session.scalars(select(Ticket))) == []


def test_an_incident_notice_leads_answers_on_its_topic_while_open(router):
    from ticketing import incidents

    for n in range(5):
        say(router, "开票提示服务器繁忙，请稍后再试", user=f"hit-{n}")
    with session_scope() as db_session:
        opened = incidents.detect(db_session=db_session)
        assert [i.topic for i in opened] == ["busy_server"]
        incidents.publish_notice(db_session=db_session, incident_id=opened[0].id, text="已知晓，正在处理，请稍候。")
        incident_id = opened[0].id
    noticed = say(router, "开票一直提示服务器繁忙", user="later")
    assert noticed.text.startswith("已知晓，正在处理")
    assert not say(router, "发票怎么作废", user="later2").text.startswith("已知晓"), "other topics are untouched"
    with session_scope() as db_session:
        incidents.close(db_session=db_session, incident_id=incident_id)
    assert not say(router, "开票一直提示服务器繁忙", user="after").text.startswith("已知晓")


def test_a_flood_while_a_person_has_it_is_throttled_not_appended_to_the_ticket(router, monkeypatch):
    """100 large messages in a burst with a ticket open: the first ones reach the person, the rest are paused (one
    notice a minute, in Chinese), recorded with intent "throttled", and the ticket stays readable."""
    from core.conversation import service as conversation_service
    from handlers import throttle

    router.rate_limit = 5
    monkeypatch.setattr(throttle.time, "time", lambda: 6_000_000.0)  # the whole flood within one minute
    say(router, "转人工")  # 1 of 5
    ticket = only_ticket()
    before = len(transcript(ticket.id))
    flood = [say(router, f"第{n}条：" + "发" * 6000) for n in range(100)]
    assert all(reply.intent == "human" and reply.silent for reply in flood[:4])
    assert all(reply.intent == "throttled" for reply in flood[4:])
    notices = [reply.text for reply in flood[4:] if not reply.silent]
    assert notices == [throttle.THROTTLED_HUMAN_TEXT], "told once, not once per message"
    assert len(transcript(ticket.id)) == before + 4, "the flood stays out of the ticket"
    with session_scope() as db_session:
        history = conversation_service.get_history(db_session=db_session, channel="telegram", user_id="m1", limit=500)
    assert sum(turn.intent == "throttled" for turn in history) == 96

    monkeypatch.setattr(throttle.time, "time", lambda: 10**10)  # a minute later: counted afresh
    nudge = say(router, "还在吗")  # the first nudge since the handoff is answered, and reaches the ticket
    assert nudge.intent == "human" and ticket.number in nudge.text and ("merchant", "还在吗") in transcript(ticket.id)


def test_throttled_again_after_a_minute_gets_a_new_notice(router, monkeypatch):
    from handlers import throttle

    router.rate_limit = 1
    say(router, "转人工")
    clock = [1000.0 * 60]
    monkeypatch.setattr(throttle.time, "time", lambda: clock[0])
    say(router, "一")
    assert say(router, "二").text == throttle.THROTTLED_HUMAN_TEXT
    assert say(router, "三").silent
    router.store.delete("throttle-notice:telegram:m1")  # what the notice key's 60 s expiry does
    assert say(router, "四").text == throttle.THROTTLED_HUMAN_TEXT
