"""Merchants as they really write, through POST /api/chat: answers in words, pasted values, openings that already
answer a question, greetings and the menu inside a guide, follow-ups on the last topic, and "有帮助吗？"."""

from datetime import UTC, date, datetime

import pytest
from fastapi.testclient import TestClient

from bot.app import create_app
from core.clock import beijing_today
from core.conversation.state import load
from core.store import get_store
from handlers import choices, values


@pytest.fixture
def client(app_env, api_caller):
    with TestClient(create_app(), headers=api_caller.headers) as test_client:
        yield test_client


class ApiChat:
    """One merchant talking through /api/chat."""

    def __init__(self, client: TestClient, api_caller, user: str) -> None:
        self.client, self.api_caller, self.user = client, api_caller, user

    def say(self, text: str) -> dict:
        response = self.client.post("/api/chat", json={"user_id": self.user, "text": text})
        assert response.status_code == 200, response.text
        return response.json()

    @property
    def state(self):
        return load(store=get_store(), channel="api", user_id=self.api_caller.identity(self.user))


@pytest.fixture
def chat(client, api_caller) -> ApiChat:
    return ApiChat(client, api_caller, "writer")


def labels(body: dict) -> list[str]:
    return [o["label"] for o in body["options"]]


# --- answers in words ---


def test_a_no_in_words_picks_the_negative_option(chat):
    first = chat.say("发票查询提示未找到相关记录")
    assert first["topic"] == "missing_query_no_record" and "刚刚才开的吗" in first["text"]
    assert labels(first) == ["是，刚开完就查不到", "不是，之前开的"]
    reply = chat.say("不是，上个月开的")
    assert reply["intent"] == "guide" and "开票日期范围" in reply["text"]
    assert chat.state.guide.path[-1][2] == "不是，之前开的"
    assert chat.say("对，包含的")["intent"] == "guide"
    assert chat.state.guide.path[-1][2] == "包含"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("不是，上个月开的", 1),
        ("没错", 0),
        ("嗯，刚开的", 0),
        ("刚开完", 0),
        ("没有", 1),
        ("不能开票怎么办", None),
        ("不知道", None),
    ],
)
def test_replies_in_words_map_to_options(text, expected):
    assert choices.by_meaning(text, ["是，刚开完就查不到", "不是，之前开的"]) == expected


def test_a_new_question_is_not_taken_for_an_answer():
    labels_ = ["点了提交开票之后", "登录或打开页面时", "查询或下载发票时"]
    assert choices.by_meaning("查验发票提示查无此票", labels_) is None
    assert choices.by_meaning("下载的时候", labels_) == 2


def test_a_new_question_in_pinyin_is_not_taken_for_an_answer(chat):
    han = ApiChat(chat.client, chat.api_caller, "han")
    first = han.say("开票提示服务器繁忙")
    expected = han.say("电子普票开错了怎么作废")
    assert chat.say("开票提示服务器繁忙")["text"] == first["text"]
    reply = chat.say("dianzi pupiao kaicuo le zenme zuofei")
    assert reply["intent"] == expected["intent"] == "answer" and reply["topic"] == expected["topic"]
    assert "在哪一步出现" not in reply["text"] and labels(reply) == labels(expected)
    assert labels(reply)[-1] == "继续刚才的排查" and chat.state.guide.paused
    assert "在哪一步出现" in chat.say("继续")["text"]
    chat.say("xiazai fapiao de shihou")  # an answer in pinyin words picks its option, as in Han
    assert chat.state.guide.path[-1][2] == "查询或下载发票时"


# --- pasted values ---


def test_a_pasted_taxpayer_id_is_checked_not_handed_off(chat):
    chat.say("开票提示购买方税号不正确")
    asked = chat.say("企业")
    assert "几位" in asked["text"]
    wrong = chat.say("91110108MAO1ABCD5T")
    assert wrong["intent"] == "guide" and "不能包含字母" in wrong["text"] and "O" in wrong["text"]
    assert "几位" in wrong["text"] and labels(wrong) == labels(asked)
    right = chat.say("税号是 91110108MA01ABCD5T")
    assert right["intent"] == "guide" and "91110108MA01ABCD5T" in right["text"]
    assert "营业执照上的代码逐位核对" in right["text"]
    handed = chat.say("核对过，完全一致")
    assert handed["intent"] == "handoff" and "91110108MA01ABCD5T" in handed["text"]


def test_a_pasted_date_is_checked_and_answers_the_question(chat):
    chat.say("查验发票提示查无此票")
    chat.say("1")
    asked = chat.say("都一致")
    assert "今天开的吗" in asked["text"]
    wrong = chat.say("2月30号开的")
    assert "2月没有30日" in wrong["text"] and "今天开的吗" in wrong["text"]
    today = chat.say(f"{beijing_today():%Y-%m-%d}")
    assert "明天再查" in today["text"] and labels(today) == ["解决了", "还没解决"]
    assert "今天开的吗" in chat.say("返回")["text"]
    onward = chat.say("昨天开的")
    assert "离线开具" in onward["text"]


def test_a_pasted_invoice_number_is_checked(chat):
    chat.say("发票查询提示未找到相关记录")
    chat.say("不是，之前开的")
    chat.say("包含")
    chat.say("选对了")
    chat.say("都是全部")
    wrong = chat.say("1234567")
    assert "少了1位" in wrong["text"] and "按发票号码查" in wrong["text"]
    right = chat.say("24442000000012345678")
    assert "24442000000012345678" in right["text"] and "离线开具" in right["text"]


@pytest.mark.parametrize(
    ("text", "value", "problem"),
    [
        ("9111 0108 MA01 ABCD 5T", "91110108MA01ABCD5T", None),
        ("91110108MA01ABCD5", None, "18位"),
        ("18位", None, None),
    ],
)
def test_taxpayer_ids_are_read_with_the_parsers(text, value, problem):
    reading = values.read("taxpayer_id", text)
    if value is None and problem is None:
        assert reading is None
        return
    assert reading.value == value
    assert (problem is None) == (reading.problem is None) and (problem or "") in (reading.problem or "")


def test_dates_in_the_future_or_impossible_are_explained():
    today = date(2025, 3, 10)
    assert values.read("date", "2025年3月1日", today).value == "2025年3月1日"
    assert values.read("date", "12月5号", today).value == "2024年12月5日"
    assert "还没到" in values.read("date", "2026-01-01", today).problem
    assert values.read("date", "今天", today).is_today
    assert values.read("date", "都一致", today) is None


# --- openings that already answer ---


def test_an_opening_that_names_the_answer_skips_the_question(chat):
    reply = chat.say("数电票开错了要红冲，对方还没确认")
    assert reply["topic"] == "red_digital_unconfirmed"
    assert "要冲的是哪种发票" not in reply["text"] and "或入账确认吗" not in reply["text"]
    assert "整张冲掉" in reply["text"] and labels(reply) == ["整张冲掉", "只冲一部分"]
    assert chat.state.guide.path == [
        ["red_digital_unconfirmed", "kind", "数电票（20位号码）"],
        ["red_digital_unconfirmed", "buyer", "还没有"],
    ]
    assert "或入账确认吗" in chat.say("返回")["text"]
    assert "要冲的是哪种发票" in chat.say("返回")["text"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("对方还没确认", "还没有"),
        ("没确认", "还没有"),
        ("尚未确认", "还没有"),
        ("对方还没有确认", "还没有"),
        ("已经确认了", "已经确认了"),
        ("对方确认过了", "已经确认了"),
        ("对方已经确认了吗", None),
        ("需要对方确认吗", None),
        ("对方不清楚", None),
    ],
)
def test_a_yes_no_question_is_answered_by_saying_it_was_done_or_not(text, expected):
    labels_ = ["还没有", "已经确认了", "不清楚"]
    index = choices.polar_mentioned(text, labels_)
    assert (labels_[index] if index is not None else None) == expected


def test_a_guide_chosen_on_an_answer_skips_what_the_question_said(chat):
    chat.say("开票提示服务器繁忙")
    chat.say("菜单")  # that guide waits, so the next guided topic is answered with a 按步骤排查 option
    answer = chat.say("数电票开错了要红冲，对方还没确认")
    assert answer["intent"] == "answer" and labels(answer)[0] == "按步骤排查这个问题"
    started = chat.say("1")
    assert started["intent"] == "guide" and started["topic"] == "red_digital_unconfirmed"
    assert "要冲的是哪种发票" not in started["text"] and "或入账确认吗" not in started["text"]
    assert labels(started) == ["整张冲掉", "只冲一部分"]


def test_a_negated_mention_answers_nothing():
    assert choices.mentioned("不是数电票", ["数电票（20位号码）", "税控设备开的发票"]) is None
    assert choices.mentioned("数电票红冲了", ["数电票（20位号码）", "税控设备开的发票"]) == 0


# --- greeting and menu inside a guide ---


def test_a_greeting_inside_a_guide_greets_and_repeats_the_question(chat):
    first = chat.say("开票提示服务器繁忙")
    hello = chat.say("你好")
    assert hello["intent"] == "guide" and hello["text"].startswith("您好！")
    assert "在哪一步出现" in hello["text"] and labels(hello) == labels(first)


def test_the_menu_inside_a_guide_shows_the_menu_and_the_guide_waits(chat):
    chat.say("开票提示服务器繁忙")
    menu = chat.say("菜单")
    assert menu["intent"] == "greeting" and "在哪一步出现" not in menu["text"]
    assert "查询发票状态" in labels(menu) and labels(menu)[-1] == "继续刚才的排查"
    assert chat.state.guide.paused
    resumed = chat.say("继续")
    assert resumed["intent"] == "guide" and "在哪一步出现" in resumed["text"]


# --- follow-ups on the last topic, and "有帮助吗？" ---


def test_an_answer_asks_whether_it_helped_by_its_options(chat):
    answer = chat.say("电子普票开错了怎么作废")
    assert answer["intent"] == "answer"
    topic = answer["topic"]
    assert [(o["label"], o["payload"]) for o in answer["options"]] == [
        ("有帮助", f"feedback:yes:{topic}"),
        ("没解决", f"feedback:no:{topic}"),
    ]
    thanks = chat.say("1")
    assert thanks["intent"] == "answer" and "很高兴" in thanks["text"] and not thanks["options"]


def test_not_solved_offers_the_next_candidate_then_a_person_and_records_the_question(chat, api_caller):
    from core.database import session_scope
    from knowledge.unanswered import find_turns

    answer = chat.say("电子普票开错了怎么作废")
    first = answer["topic"]
    others = [t for t in answer["candidates"] if t != first]
    assert others, "the matcher considered other topics"
    nxt = chat.say("没解决")
    assert nxt["intent"] == "answer" and nxt["topic"] == others[0] and nxt["text"].startswith("抱歉没能帮您解决")
    assert labels(nxt) == ["有帮助", "没解决"]
    with session_scope() as db_session:
        turns = find_turns(db_session=db_session, since=datetime(2000, 1, 1, tzinfo=UTC))
    mine = [t for t in turns if t.user_id == api_caller.identity("writer")]
    assert [t.text for t in mine] == ["电子普票开错了怎么作废"]
    reply = nxt
    for _ in range(5):  # each further "还是不行" tries the next candidate until none is left
        if "转人工客服" in labels(reply):
            break
        reply = chat.say("还是不行")
    assert reply["intent"] == "answer" and "转人工客服" in labels(reply) and "办法就是这些" in reply["text"]
    handed = chat.say("1")
    assert handed["intent"] == "handoff"


def unanswered(api_caller, user: str) -> list[str]:
    """The texts of `user`'s turns that the admins' unanswered list reads."""
    from core.database import session_scope
    from knowledge.unanswered import find_turns

    with session_scope() as db_session:
        turns = find_turns(db_session=db_session, since=datetime(2000, 1, 1, tzinfo=UTC))
    return [t.text for t in turns if t.user_id == api_caller.identity(user)]


def test_a_typed_followup_that_leaves_only_a_person_records_the_question(chat, api_caller):
    reply = chat.say("电子普票开错了怎么作废")
    assert reply["intent"] == "answer"
    for text in ["还是不行", "没用啊", "还是报错", "还是不行", "没用啊", "还是报错"]:
        if "转人工客服" in labels(reply):
            break
        assert unanswered(api_caller, "writer") == [], "nothing recorded while there is something to try"
        reply = chat.say(text)
        assert reply["intent"] == "answer", text
    assert "转人工客服" in labels(reply) and "办法就是这些" in reply["text"]
    assert unanswered(api_caller, "writer") == ["电子普票开错了怎么作废"]  # as the "没解决" option records it


def test_a_followup_the_bot_cannot_place_is_unanswered(chat, api_caller):
    reply = chat.say("还是报错")
    assert reply["intent"] == "fallback" and "转人工客服" in labels(reply)
    assert unanswered(api_caller, "writer") == ["还是报错"]


def test_a_followup_after_a_guided_topic_goes_on_with_its_guide(chat):
    chat.say("数电票开错了怎么红冲")
    menu = chat.say("菜单")
    assert menu["intent"] == "greeting"
    still = chat.say("我已经按你说的做了还是提示这个")
    assert still["intent"] == "guide" and still["topic"] == "red_digital_unconfirmed" and "继续" in still["text"]
    chat.say("退出")
    again = chat.say("还是不行")
    assert again["intent"] == "guide" and again["topic"] == "red_digital_unconfirmed"
    assert "要冲的是哪种发票" in again["text"]


def test_still_not_working_inside_a_guide_asks_its_question_again(chat):
    first = chat.say("开票提示服务器繁忙")
    again = chat.say("还是不行啊")
    assert again["intent"] == "guide" and "在哪一步出现" in again["text"] and labels(again) == labels(first)
    assert "不在我能帮忙的范围" not in again["text"] and not chat.state.guide.paused


def test_no_followup_without_a_last_topic(chat):
    reply = chat.say("还是不行")
    assert reply["intent"] != "answer" or reply["topic"] is None
    assert chat.state.last_topic is None


def test_then_what_about_stays_on_the_last_question(chat):
    first = chat.say("电子普票开错了怎么作废")
    assert first["intent"] == "answer"
    alone = ApiChat(chat.client, chat.api_caller, "fresh").say("那专票呢")
    assert alone["intent"] in {"clarify", "fallback"}  # without context the matcher cannot tell
    reply = chat.say("那专票呢")
    assert reply["intent"] == "answer" and reply["topic"] in first["candidates"]
    assert labels(reply) == ["有帮助", "没解决"]


def test_not_solved_then_still_not_working_records_the_question_once(chat, api_caller):
    reply = chat.say("电子普票开错了怎么作废")
    reply = chat.say("没解决")
    for _ in range(6):
        if "转人工客服" in labels(reply):
            break
        reply = chat.say("还是不行")
    assert "转人工客服" in labels(reply)
    assert unanswered(api_caller, "writer") == ["电子普票开错了怎么作废"]
    chat.say("电子普票开错了怎么作废")  # asked again later: a new question, recorded again when it fails again
    chat.say("没解决")
    assert unanswered(api_caller, "writer") == ["电子普票开错了怎么作废"] * 2
