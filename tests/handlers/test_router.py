"""Conversation behaviour through the router, on each database."""

import pytest

from bot.bootstrap import prepare_database
from core.conversation import service as conversation_service
from core.conversation.state import ChatState, load, save
from core.database import session_scope
from core.messages import IncomingMessage
from core.store import MemoryStore
from handlers.router import make_router


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def router(app_env, clock):
    prepare_database()
    return make_router(store=MemoryStore(clock=clock))


def say(router, text: str, user: str = "m1", channel: str = "api"):
    with session_scope() as db_session:
        return router.handle(IncomingMessage(channel=channel, user_id=user, text=text), db_session=db_session)


def set_pending(router, payloads: list[str], user: str = "m1", channel: str = "api") -> None:
    pending = [{"label": f"选项{i}", "payload": p} for i, p in enumerate(payloads, 1)]
    save(store=router.store, channel=channel, user_id=user, state=ChatState(pending=pending), ttl=60)


def test_greeting_shows_menu_and_a_number_picks_from_it(router):
    reply = say(router, "您好，请问有人吗")
    assert reply.intent == "greeting"
    assert [o.payload for o in reply.options] == ["menu:faq", "intent:invoice_lookup", "intent:handoff"]
    assert "1. " in reply.render_text()
    picked = say(router, "2")
    assert picked.intent == "invoice_lookup"
    assert "20位" in picked.text


@pytest.mark.parametrize("text", ["人工客服", "转人工", "我要投诉你们", "不要机器人，找真人"])
def test_asking_for_a_person_hands_off(router, text):
    reply = say(router, text)
    assert reply.intent == "handoff"
    assert reply.topic is None


def test_complaint_is_acknowledged(router):
    assert "投诉" in say(router, "我要投诉").text


def test_invoice_number_is_recognised_and_confirmed(router):
    reply = say(router, "发票状态查询 25 1120 0000 0012 3456 78")
    assert reply.intent == "invoice_lookup"
    assert reply.invoice == {"number": "25112000000012345678"}
    assert "25112000000012345678" in reply.text


def test_code_and_number_are_recognised(router):
    reply = say(router, "帮我查下这张票 发票代码 011001800604 发票号码 12345678")
    assert reply.intent == "invoice_lookup"
    assert reply.invoice == {"code": "011001800604", "number": "12345678"}


def test_lookup_without_number_asks_for_it(router):
    reply = say(router, "我想查发票状态")
    assert reply.intent == "invoice_lookup"
    assert reply.invoice == {}
    assert "发票号码" in reply.text


def test_wrong_length_number_is_explained(router):
    reply = say(router, "查一下发票 2511200000001234567")
    assert reply.intent == "invoice_lookup"
    assert "19位" in reply.text


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\x00\x01\x02", "？？？"])
def test_messages_without_words_get_a_polite_prompt(router, text):
    reply = say(router, text)
    assert reply.intent == "fallback"
    assert "文字" in reply.text
    assert reply.options


def test_emoji_only_is_a_reaction_not_an_empty_message(router):
    reply = say(router, "😀😀😀")
    assert reply.intent == "smalltalk" and "文字" not in reply.text and not reply.options


def test_huge_message_is_answered_and_recorded(router):
    text = "我们公司开票一直提示服务器繁忙，" * 700
    reply = say(router, text, user="big")
    assert reply.text
    with session_scope() as db_session:
        history = conversation_service.get_history(db_session=db_session, channel="api", user_id="big")
    assert len(history) == 1 and history[0].text == text


def test_off_topic_question_is_not_answered(router):
    reply = say(router, "明天北京天气怎么样")
    assert reply.intent in {"fallback", "clarify"}
    assert reply.topic is None


def test_pending_choice_by_ordinal_answers_that_topic(router):
    set_pending(router, ["faq:busy_maintenance", "faq:verify_daily_limit", "intent:handoff"])
    reply = say(router, "第二个")
    assert reply.intent == "answer"
    assert reply.topic == "verify_daily_limit"
    pending = load(store=router.store, channel="api", user_id="m1").pending
    assert pending == [  # an answer asks "有帮助吗？" by its options
        {"label": "有帮助", "payload": "feedback:yes:verify_daily_limit"},
        {"label": "没解决", "payload": "feedback:no:verify_daily_limit"},
    ]


def test_choosing_a_topic_with_a_guide_starts_the_guide(router):
    set_pending(router, ["faq:busy_maintenance", "faq:login_network_fail", "intent:handoff"])
    reply = say(router, "第二个")
    assert reply.intent == "guide" and reply.topic == "login_network_fail"
    assert reply.confidence == 1.0
    assert all(o.payload.startswith("guide:") for o in reply.options)
    state = load(store=router.store, channel="api", user_id="m1")
    assert state.pending == [{"label": o.label, "payload": o.payload} for o in reply.options]
    assert state.guide is not None and state.guide.guide == "login_network_fail"


def test_a_matched_topic_with_a_guide_starts_it_and_a_handoff_carries_the_answers(router):
    first = say(router, "开票提示服务器繁忙", user="g1")
    assert first.intent == "guide" and first.topic == "busy_server" and first.confidence > 0.8
    second = say(router, "1", user="g1")
    assert second.intent == "guide" and second.topic == "busy_server"
    handed = say(router, "转人工", user="g1")
    assert handed.intent == "handoff" and handed.topic == "busy_server"
    assert "已为客服记录" in handed.text and first.options[0].label in handed.text
    state = load(store=router.store, channel="api", user_id="g1")
    assert state.guide is None and state.handoff_note["topic"] == "busy_server"


def test_an_off_topic_message_mid_guide_is_answered_with_a_way_back(router):
    say(router, "开票提示服务器繁忙", user="g2")
    other = say(router, "我想查发票状态", user="g2")
    assert other.intent == "invoice_lookup"
    assert other.options[-1].payload == "guide:resume"
    resumed = say(router, "继续刚才的排查", user="g2")
    assert resumed.intent == "guide" and resumed.topic == "busy_server"


@pytest.mark.parametrize("text", ["查无此票", "009 查无此票"])
def test_a_pasted_error_message_is_not_an_invoice_lookup(router, text):
    reply = say(router, text)
    assert reply.intent == "guide" and reply.topic == "verify_not_found"


@pytest.mark.parametrize(
    ("text", "topic"), [("1", "busy_server"), ("选2", "login_network_fail"), (" 2 ", "login_network_fail")]
)
def test_pending_choice_by_number(router, text, topic):
    set_pending(router, ["faq:busy_server", "faq:login_network_fail"])
    assert say(router, text).topic == topic


def test_option_words_pick_that_option(router):
    say(router, "你好")
    assert say(router, "查询发票状态").intent == "invoice_lookup"


def test_choice_by_the_words_of_its_label(router):
    pending = [
        {"label": "提示服务器繁忙怎么办？", "payload": "faq:busy_server"},
        {"label": "数电票的20位号码是什么意思？", "payload": "faq:digital_invoice_number"},
    ]
    save(store=router.store, channel="api", user_id="m1", state=ChatState(pending=pending), ttl=60)
    picked = say(router, "数电票的20位号码是什么意思")
    assert picked.intent == "answer" and picked.topic == "digital_invoice_number"
    assert picked.confidence == 1.0  # taken from the choice, not re-matched


@pytest.mark.parametrize("text", ["Hello, my fapiao 开不出来, what should I do?", "UKey 插上没反应 help!!!"])
def test_mixed_english_gets_a_reply(router, text):
    reply = say(router, text)
    assert reply.text and reply.intent in {"answer", "guide", "clarify", "fallback"}


def test_number_outside_the_choices_is_not_a_choice(router):
    set_pending(router, ["faq:busy_server", "faq:login_network_fail"])
    reply = say(router, "7")
    assert reply.topic is None


def test_choices_belong_to_one_conversation(router):
    set_pending(router, ["faq:busy_server", "faq:login_network_fail"], user="alice", channel="wechat")
    assert say(router, "2", user="alice", channel="wechat").topic == "login_network_fail"
    set_pending(router, ["faq:busy_server", "faq:login_network_fail"], user="alice", channel="wechat")
    assert say(router, "2", user="alice", channel="telegram").topic is None
    assert say(router, "2", user="bob", channel="wechat").topic is None


def test_session_expires_after_its_ttl(router, clock):
    say(router, "你好")
    clock.now += router.state_ttl + 1
    assert say(router, "3").intent != "handoff"


def test_fallback_twice_in_domain_hands_off_but_chatter_does_not(router):
    chatter = [say(router, "今天中午吃什么好呢"), say(router, "我家的猫不吃饭")]
    assert [r.intent for r in chatter] == ["fallback", "fallback"], "off-topic chatter only offers a person"
    first = say(router, "税控盘外壳发烫正常吗")
    second = say(router, "发票邮寄的信封用什么颜色")
    assert (first.intent, second.intent) == ("fallback", "handoff")
    assert "转人工" in first.text and "人工客服" in second.text


def test_every_turn_is_recorded(router):
    say(router, "你好", user="rec")
    say(router, "人工客服", user="rec")
    with session_scope() as db_session:
        history = conversation_service.get_history(db_session=db_session, channel="api", user_id="rec")
    assert [(t.text, t.intent) for t in history] == [("你好", "greeting"), ("人工客服", "handoff")]
    assert all(t.reply for t in history)


def test_too_many_messages_get_a_polite_pause_and_are_still_recorded(app_env):
    from handlers.throttle import THROTTLED_TEXT

    prepare_database()
    limited = make_router(store=MemoryStore())
    limited.rate_limit = 3
    replies = [say(limited, "发票怎么作废", user="fast") for _ in range(4)]
    assert [r.text == THROTTLED_TEXT for r in replies] == [False, False, False, True]
    assert replies[-1].intent == "throttled", "kept apart from the fallbacks of the unanswered list"
    assert say(limited, "发票怎么作废", user="calm").text != THROTTLED_TEXT, "the limit is per identity"
    with session_scope() as db_session:
        history = conversation_service.get_history(db_session=db_session, channel="api", user_id="fast")
    assert len(history) == 4, "a throttled message is not lost"
