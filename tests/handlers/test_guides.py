"""Troubleshooting guides: YAML validation, every shipped guide walked to every leaf, and guide behaviour in chat."""

import textwrap
from types import SimpleNamespace

import pytest

from bot.bootstrap import prepare_database
from bot.channels.telegram.render import MAX_CALLBACK_BYTES, keyboard
from bot.triage import make_triage_router, triage_one
from core.conversation.state import ChatState, GuideProgress, load, save
from core.database import session_scope
from core.messages import IncomingMessage
from core.store import MemoryStore
from handlers import guide as guide_handler
from handlers import handoff
from handlers.router import Router, make_router
from knowledge.guides import GUIDE_DIR, Guide, GuideError, check_guides, get_guides, load_guides, parse_guide
from knowledge.service import default_entries
from tests.conftest import REPO

REQUIRED = {
    "issue_failed_generic",
    "login_network_fail",
    "busy_server",
    "ukey_not_detected",
    "missing_after_issue",
    "missing_query_no_record",
    "verify_not_found",
    "buyer_taxid_invalid",
    "quota_insufficient",
    "red_digital_unconfirmed",
}
SHIPPED = get_guides()  # lenient, so that a broken file fails test_shipped_guides_are_valid, not collection
FAQ_ANSWERS = {entry.id: entry.answer for entry in default_entries()}
LEAF_PATHS = [(gid, n) for gid, g in sorted(SHIPPED.items()) for n in range(len(g.leaf_paths()))]

# A small guide for behaviour tests, attached to a real FAQ topic so that choosing the topic starts it.
TINY = """
id: busy_server
title: 测试排查
intro: 测试用的排查。
errors: [服务器繁忙]
start: one
steps:
  one:
    text: 第一个问题？
    options:
      - {label: 去第二步, next: two}
      - {label: 直接转人工, handoff: 第一步就转人工。}
  two:
    info: 先检查一下。
    text: 第二个问题？
    options:
      - {label: 是的有, resolve: 这样修。, unsolved: three}
      - {label: 没有, handoff: 第二步没有。}
      - {label: 回到第一步, next: one}
  three:
    text: 第三个问题？
    options:
      - {label: 好的, resolve: 再这样修。}
      - {label: 不行, handoff: 第三步不行。}
"""


def tiny_guides() -> dict[str, Guide]:
    guide, problems = parse_guide(TINY, file="busy_server.yaml")
    assert guide is not None, problems
    return {guide.id: guide}


# --- fixtures and helpers -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """One migrated SQLite database with the shipped FAQ for the whole module."""
    from tests.conftest import clear_process_caches

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path_factory.mktemp('guides') / 'guides.db'}")
    monkeypatch.delenv("REDIS_URL", raising=False)
    clear_process_caches()
    prepare_database()
    yield
    monkeypatch.undo()
    clear_process_caches()


@pytest.fixture(scope="module")
def router(database) -> Router:
    """The shipped router with the shipped guides."""
    return make_router(store=MemoryStore(), record=False)


@pytest.fixture
def tiny(router) -> Router:
    """A router whose only guide is TINY (for busy_server), with a fresh store."""
    return Router(store=MemoryStore(), knowledge=router.knowledge, record=False, guides=tiny_guides())


class Chat:
    """One merchant talking to a router."""

    def __init__(self, router: Router, user: str) -> None:
        self.router = router
        self.user = user

    def say(self, text: str):
        with session_scope() as db_session:
            message = IncomingMessage(channel="api", user_id=self.user, text=text)
            return self.router.handle(message, db_session=db_session)

    def start(self, topic: str):
        """Pick `topic` from a clarify-style choice (the FAQ payload), as a merchant would."""
        pending = [{"label": "问题", "payload": f"faq:{topic}"}]
        save(store=self.router.store, channel="api", user_id=self.user, state=ChatState(pending=pending), ttl=60)
        return self.say("1")

    @property
    def state(self) -> ChatState:
        return load(store=self.router.store, channel="api", user_id=self.user)


def labels(reply) -> list[str]:
    return [o.label for o in reply.options]


def step_labels(guide: Guide, step_id: str) -> list[str]:
    return [o.label for o in guide.steps[step_id].options]


# --- loading and validation -----------------------------------------------------------------------------------------


def test_shipped_guides_are_valid():
    problems = check_guides()
    assert all(not listed for listed in problems.values()), [str(p) for listed in problems.values() for p in listed]
    assert set(problems) == set(SHIPPED)


def test_the_required_guides_ship_and_belong_to_faq_topics():
    topics = {entry.id for entry in default_entries()}
    assert set(SHIPPED) >= REQUIRED
    assert set(SHIPPED) <= topics
    for guide in SHIPPED.values():
        assert 3 <= len(guide.steps) <= 7, guide.id
        assert (GUIDE_DIR / f"{guide.id}.yaml").exists()


def test_leaf_paths_reach_every_step_and_every_leaf():
    for guide in SHIPPED.values():
        paths = guide.leaf_paths()
        visited = {step for path in paths for step, _ in path}
        assert visited == set(guide.steps), guide.id
        ends = {path[-1] for path in paths}
        leaves = {(s.id, i) for s in guide.steps.values() for i, o in enumerate(s.options) if o.is_leaf}
        assert ends == leaves, guide.id


def test_labels_fit_buttons_and_payloads_fit_telegram_callback_data():
    for guide in SHIPPED.values():
        assert len(guide_handler.start_option(guide).payload.encode()) <= MAX_CALLBACK_BYTES
        for step in guide.steps.values():
            for number, option in enumerate(step.options, 1):
                assert len(option.label) <= 20, (guide.id, step.id, option.label)
                assert len(guide_handler.option_payload(step.id, number).encode()) <= MAX_CALLBACK_BYTES
            assert keyboard([o.label for o in step.options]) is not None
    for option in (guide_handler.RESUME, guide_handler.SOLVED, guide_handler.UNSOLVED):
        assert len(option.payload.encode()) <= MAX_CALLBACK_BYTES


def _guide_yaml(steps: str, *, start: str = "a", extra: str = "") -> str:
    return f"id: demo\ntitle: 演示\nintro: 演示。\nstart: {start}\n{extra}steps:\n" + textwrap.indent(
        textwrap.dedent(steps), "  "
    )


BROKEN = {
    "dangling next": (
        """
        a:
          text: 问？
          options: [{label: 甲, next: nowhere}, {label: 乙, resolve: 修。}]
        """,
        "a",
        "'nowhere' is not a step (dangling)",
    ),
    "dangling unsolved": (
        """
        a:
          text: 问？
          options: [{label: 甲, resolve: 修。, unsolved: nowhere}]
        """,
        "a",
        "unsolved 'nowhere' is not a step",
    ),
    "unreachable step": (
        """
        a:
          text: 问？
          options: [{label: 甲, resolve: 修。}]
        b:
          text: 没人来？
          options: [{label: 乙, handoff: 转。}]
        """,
        "b",
        "unreachable",
    ),
    "step with no options": (
        """
        a:
          text: 问？
          options: []
        """,
        "a",
        "no options",
    ),
    "cycle with no exit": (
        """
        a:
          text: 问？
          options: [{label: 甲, next: b}, {label: 乙, resolve: 修。}]
        b:
          text: 再问？
          options: [{label: 丙, next: c}]
        c:
          text: 又问？
          options: [{label: 丁, next: b}]
        """,
        "b",
        "cycle with no exit",
    ),
    "duplicate labels": (
        """
        a:
          text: 问？
          options: [{label: 甲, resolve: 修。}, {label: " 甲 ", handoff: 转。}]
        """,
        "a",
        "duplicate option label",
    ),
    "label too long": (
        """
        a:
          text: 问？
          options: [{label: 这是一个非常非常非常非常非常非常长的选项文字, resolve: 修。}]
        """,
        "a",
        "at most 20",
    ),
    "two targets": (
        """
        a:
          text: 问？
          options: [{label: 甲, resolve: 修。, handoff: 转。}]
        """,
        "a",
        "exactly one of",
    ),
    "no target": (
        """
        a:
          text: 问？
          options: [{label: 甲}]
        """,
        "a",
        "exactly one of",
    ),
    "unknown key": (
        """
        a:
          text: 问？
          options: [{label: 甲, nxt: a, resolve: 修。}]
        """,
        "a",
        "unknown key 'nxt'",
    ),
    "unsolved on a handoff": (
        """
        a:
          text: 问？
          options: [{label: 甲, handoff: 转。, unsolved: a}]
        """,
        "a",
        "unsolved (a step id) belongs only to a resolve option",
    ),
    "step without a question": (
        """
        a:
          options: [{label: 甲, resolve: 修。}]
        """,
        "a",
        "text (the question) is missing",
    ),
    "too many options": (
        """
        a:
          text: 问？
          options: [{label: 一, resolve: 修}, {label: 二, resolve: 修}, {label: 三, resolve: 修},
            {label: 四, resolve: 修}, {label: 五, resolve: 修}, {label: 六, resolve: 修}, {label: 七, resolve: 修},
            {label: 八, resolve: 修}, {label: 九, resolve: 修}, {label: 十, resolve: 修}]
        """,
        "a",
        "at most 9",
    ),
    "reserved step id": (
        """
        done:
          text: 问？
          options: [{label: 甲, resolve: 修。}]
        """,
        "done",
        "step id must be",
    ),
    "step id too long for the callback data": (
        """
        a_step_id_that_is_far_too_long_for_payloads:
          text: 问？
          options: [{label: 甲, resolve: 修。}]
        """,
        "a_step_id_that_is_far_too_long_for_payloads",
        "step id must be",
    ),
    "switch to itself": (
        """
        a:
          text: 问？
          options: [{label: 甲, guide: demo}, {label: 乙, resolve: 修。}]
        """,
        "a",
        "must be another guide's id",
    ),
    "value of an unknown kind": (
        """
        a:
          text: 问？
          value: {kind: phone, option: 1}
          options: [{label: 甲, resolve: 修。}]
        """,
        "a",
        "kind one of taxpayer_id, invoice_number, date",
    ),
    "value going nowhere": (
        """
        a:
          text: 问？
          value: {kind: date, next: nowhere}
          options: [{label: 甲, resolve: 修。}]
        """,
        "a",
        "value: next 'nowhere' is not a step",
    ),
    "value option out of range": (
        """
        a:
          text: 问？
          value: {kind: taxpayer_id, option: 3, today: 1}
          options: [{label: 甲, resolve: 修。}]
        """,
        "a",
        "option must be an option number from 1 to 1",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_kind_of_mistake_is_reported_with_file_and_step(case):
    steps, step, message = BROKEN[case]
    guide, problems = parse_guide(_guide_yaml(steps), file="demo.yaml")
    assert guide is None
    assert any(p.step == step and message in p.message for p in problems), [str(p) for p in problems]
    assert all(str(p).startswith("demo.yaml") for p in problems)
    assert any(f"step {step!r}" in str(p) for p in problems)


ONE_STEP = "a:\n  text: 问？\n  options: [{label: 甲, resolve: 修。}]\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id: demo\ntitle: [unclosed", "not valid YAML"),
        ("- a list", "must hold a mapping"),
        ("id: demo\ntitle: 演示\nintro: 演示。\nstart: a\nsteps: {}\n", "steps is missing or empty"),
        (_guide_yaml(ONE_STEP, start="zz"), "start 'zz' is not"),
        (_guide_yaml(ONE_STEP).replace("title: 演示", ""), "title"),
        (_guide_yaml(ONE_STEP, extra="errors: 查无此票\n"), "errors"),
        (_guide_yaml(ONE_STEP, extra="colour: red\n"), "colour"),
        (_guide_yaml(ONE_STEP).replace("id: demo", "id: Demo-Guide"), "id must be"),
    ],
)
def test_file_level_mistakes_are_reported(text, message):
    guide, problems = parse_guide(text, file="demo.yaml")
    assert guide is None
    assert any(message in p.message for p in problems), [str(p) for p in problems]


def test_a_step_reached_only_by_a_valid_value_is_reachable():
    steps = """
    a:
      text: 税号？
      value: {kind: taxpayer_id, next: b}
      options: [{label: 甲, resolve: 修。}]
    b:
      text: 核对过吗？
      options: [{label: 乙, handoff: 人工。}]
    """
    guide, problems = parse_guide(_guide_yaml(steps), file="demo.yaml")
    assert guide is not None, [str(p) for p in problems]
    assert guide.steps["a"].value.kind == "taxpayer_id" and guide.steps["a"].value.next == "b"


def test_a_valid_cycle_with_an_exit_is_accepted():
    steps = """
    a:
      text: 问？
      options: [{label: 甲, next: b}, {label: 乙, resolve: 修。}]
    b:
      text: 再问？
      options: [{label: 返回开头, next: a}, {label: 丙, handoff: 转。}]
    """
    guide, problems = parse_guide(_guide_yaml(steps), file="demo.yaml")
    assert problems == [] and guide is not None
    assert [path[-1] for path in guide.leaf_paths()] == [("b", 1), ("a", 1)]


def test_one_uploaded_guide_can_be_checked_against_the_known_guides():
    text = _guide_yaml("a:\n  text: 问？\n  options: [{label: 甲, guide: busy_server}, {label: 乙, guide: ghost}]\n")
    guide, problems = parse_guide(text, file="demo.yaml", known=set(SHIPPED))
    assert guide is None
    assert [(p.step, p.message) for p in problems] == [("a", "option (乙): guide 'ghost' does not exist")]
    assert parse_guide(text, file="demo.yaml")[0] is not None  # without `known`, switches are not checked


def test_directory_checks_file_names_and_switches_between_guides(tmp_path):
    good = _guide_yaml(ONE_STEP)
    (tmp_path / "demo.yaml").write_text(good, encoding="utf-8")
    (tmp_path / "renamed.yaml").write_text(good, encoding="utf-8")
    switching = _guide_yaml("a:\n  text: 问？\n  options: [{label: 甲, guide: renamed}, {label: 乙, guide: demo}]\n")
    (tmp_path / "switcher.yaml").write_text(switching.replace("id: demo", "id: switcher"), encoding="utf-8")
    missing = _guide_yaml("a:\n  text: 问？\n  options: [{label: 甲, guide: ghost}]\n")
    (tmp_path / "lost.yaml").write_text(missing.replace("id: demo", "id: lost"), encoding="utf-8")
    problems = check_guides(tmp_path)
    assert problems["demo"] == []
    assert "must match the file name" in problems["renamed"][0].message
    assert "'renamed' is invalid" in problems["switcher"][0].message and problems["switcher"][0].step == "a"
    assert "'ghost' does not exist" in problems["lost"][0].message
    with pytest.raises(GuideError) as raised:
        load_guides(tmp_path)
    assert len(raised.value.problems) == 3
    assert "renamed.yaml" in str(raised.value)


# --- every shipped guide walked to every leaf -----------------------------------------------------------------------


def _walk(chat: Chat, guide: Guide, path, *, by_words: bool):
    """Choose each option of `path` (answering "还没解决" after a fix met on the way); return the last reply."""
    reply = chat.start(guide.id)
    assert reply.intent == "guide" and reply.topic == guide.id
    assert reply.text.startswith(FAQ_ANSWERS[guide.id].splitlines()[0])
    for position, (step_id, index) in enumerate(path):
        step = guide.steps[step_id]
        assert step.text in reply.text
        assert labels(reply) == step_labels(guide, step_id)
        assert [o.payload for o in reply.options][index] == f"guide:{step_id}:{index + 1}"
        option = step.options[index]
        reply = chat.say(option.label if by_words else str(index + 1))
        if position < len(path) - 1 and option.resolve is not None:
            assert labels(reply) == ["解决了", "还没解决"]
            reply = chat.say("还没解决" if by_words else "2")
    return reply, guide.steps[path[-1][0]].options[path[-1][1]]


def _checked(guide: Guide, path, *, fix_failed: bool) -> list[list[str]]:
    """The questions and answers a walk records; a fix that did not help adds "问题解决了吗？ —— 还没解决"."""
    checked = []
    for position, (step_id, index) in enumerate(path):
        option = guide.steps[step_id].options[index]
        checked.append([guide.steps[step_id].text, option.label])
        if option.resolve is not None and (position < len(path) - 1 or fix_failed):
            checked.append(["问题解决了吗？", "还没解决"])
    return checked


@pytest.mark.parametrize("by_words", [False, True], ids=["number", "words"])
@pytest.mark.parametrize(("guide_id", "number"), LEAF_PATHS, ids=[f"{g}-{n}" for g, n in LEAF_PATHS])
def test_every_leaf_of_every_guide(router, guide_id, number, by_words):
    guide = SHIPPED[guide_id]
    path = guide.leaf_paths()[number]
    chat = Chat(router, f"walk-{guide_id}-{number}-{by_words}")
    reply, leaf = _walk(chat, guide, path, by_words=by_words)
    if leaf.resolve is not None:
        assert leaf.resolve in reply.text and "问题解决了吗" in reply.text
        assert labels(reply) == ["解决了", "还没解决"]
        if not by_words:
            closed = chat.say("1")
            assert closed.intent == "guide" and "解决" in closed.text and not closed.options
            assert chat.state.guide is None
            return
        after = chat.say("还没解决")
        if leaf.unsolved is not None:
            assert after.intent == "guide" and guide.steps[leaf.unsolved].text in after.text
            return
        reply, note = after, "已按建议处理，问题仍未解决。"
    elif leaf.handoff is not None:
        note = leaf.handoff
    else:
        target = SHIPPED[leaf.guide]
        assert reply.intent == "guide" and reply.topic == target.id
        assert labels(reply) == step_labels(target, target.start)
        assert chat.state.guide.guide == target.id and len(chat.state.guide.path) == len(path)
        return
    checked = _checked(guide, path, fix_failed=leaf.resolve is not None)
    assert reply.intent == "handoff" and reply.topic == guide_id
    assert "已为客服记录" in reply.text and note in reply.text
    assert all(f"· {question} —— {answer}" in reply.text for question, answer in checked[-8:])
    state = chat.state
    assert state.guide is None
    assert state.handoff_note["note"] == note and state.handoff_note["topic"] == guide_id
    assert state.handoff_note["checked"] == checked


# --- pasted messages and triage -------------------------------------------------------------------------------------


ERRORS = sorted({(g.id, e) for g in SHIPPED.values() for e in g.errors})


@pytest.mark.parametrize(("guide_id", "text"), [("busy_server", "开票提示服务器繁忙"), *ERRORS])
def test_pasted_messages_start_their_guide_in_triage(database, guide_id, text):
    row = triage_one(make_triage_router(), text, 1)
    assert row["action"] == "guide", row
    assert row["topic"] == guide_id, row
    assert row["score"] > 0.8


def test_a_guided_question_starts_its_guide_with_the_matchers_confidence(router):
    reply = Chat(router, "q1").say("提示：服务器繁忙，请稍后再试")
    guide = SHIPPED["busy_server"]
    assert reply.intent == "guide" and reply.topic == "busy_server"
    assert reply.confidence is not None and reply.confidence > 0.8
    assert reply.text.startswith(FAQ_ANSWERS["busy_server"].splitlines()[0])
    assert guide.steps[guide.start].text in reply.text
    assert labels(reply) == step_labels(guide, guide.start)
    assert "1. " in reply.render_text()


def test_the_guide_opens_with_the_live_faq_summary_or_else_its_intro():
    guide = tiny_guides()["busy_server"]

    def turn(answer: str | None):
        entries = {} if answer is None else {"busy_server": SimpleNamespace(answer=answer)}
        return SimpleNamespace(knowledge=SimpleNamespace(entries=entries))

    assert guide_handler.summary(turn("【新版】先等十分钟。\n1. 再试。"), guide) == "【新版】先等十分钟。"
    assert guide_handler.summary(turn(None), guide) == guide.intro
    assert guide_handler.summary(turn("很长" * 100), guide) == guide.intro


def test_each_guided_faq_question_starts_its_guide(router):
    questions = {entry.id: entry.question for entry in default_entries()}
    for guide_id in SHIPPED:
        reply = Chat(router, f"faq-{guide_id}").say(questions[guide_id])
        assert (reply.intent, reply.topic) == ("guide", guide_id)


# --- commands, pausing and resuming (on the small guide) ------------------------------------------------------------


def test_back_goes_one_step_back_and_stops_at_the_first(tiny):
    chat = Chat(tiny, "back")
    chat.start("busy_server")
    assert "第一个问题" in chat.say("返回").text and "已经是第一步" in chat.say("返回").text
    chat.say("1")
    fix = chat.say("是的有")
    assert "这样修" in fix.text
    assert "第二个问题" in chat.say("返回").text  # from the "解决了吗" question back to the step
    chat.say("1")
    assert "第三个问题" in chat.say("还没解决").text
    back = chat.say("上一步")
    assert "这样修" in back.text and labels(back) == ["解决了", "还没解决"]
    assert "第二个问题" in chat.say("返回").text
    assert "第一个问题" in chat.say("返回").text
    assert chat.state.guide.path == []


def test_restart_starts_over(tiny):
    chat = Chat(tiny, "restart")
    chat.start("busy_server")
    chat.say("1")
    reply = chat.say("重来")
    assert reply.intent == "guide" and "从头开始" in reply.text and "第一个问题" in reply.text
    assert chat.state.guide.step == "one" and chat.state.guide.path == []


def test_asking_for_a_person_hands_off_with_what_was_learned(tiny):
    chat = Chat(tiny, "human")
    chat.start("busy_server")
    chat.say("去第二步")
    reply = chat.say("转人工")
    assert reply.intent == "handoff" and reply.topic == "busy_server"
    assert "已为客服记录" in reply.text and "第一个问题？ —— 去第二步" in reply.text
    note = chat.state.handoff_note
    assert note["checked"] == [["第一个问题？", "去第二步"]] and "第二个问题" in note["note"]
    assert note["path"] == [["busy_server", "one", "去第二步"]] and note["title"] == "测试排查"
    assert chat.state.guide is None


def test_a_fix_that_did_not_help_hands_off_with_the_suggestions(tiny):
    chat = Chat(tiny, "unsolved")
    chat.start("busy_server")
    chat.say("1")
    chat.say("是的有")
    chat.say("没解决")  # goes on at step three
    chat.say("好的")
    reply = chat.say("还没解决")
    assert reply.intent == "handoff"
    note = chat.state.handoff_note
    assert note["suggested"] == ["这样修。", "再这样修。"]
    assert [answer for _, answer in note["checked"]] == ["去第二步", "是的有", "还没解决", "好的", "还没解决"]


def test_a_long_record_shows_the_last_answers():
    checked = tuple((f"问题{n}？", f"答{n}") for n in range(10))
    summary = handoff.Learned("busy_server", "标题", "结论。", checked).summary()
    assert "之前还有 2 条" in summary and "问题1？" not in summary and "问题9？ —— 答9" in summary


def test_exit_leaves_the_guide(tiny):
    chat = Chat(tiny, "exit")
    chat.start("busy_server")
    reply = chat.say("退出")
    assert reply.intent == "guide" and "已结束" in reply.text
    assert chat.state.guide is None
    assert chat.say("1").intent != "guide"


def test_an_unrelated_question_is_answered_and_the_guide_can_be_resumed(tiny):
    chat = Chat(tiny, "pause")
    chat.start("busy_server")
    chat.say("1")
    other = chat.say("发票查验每天能查几次")
    assert other.intent == "answer" and other.topic != "busy_server"
    assert other.options[-1].label == "继续刚才的排查" and other.options[-1].payload == "guide:resume"
    assert chat.state.guide.paused
    resumed = chat.say("继续刚才的排查")
    assert resumed.intent == "guide" and "第二个问题" in resumed.text
    assert labels(resumed) == step_labels(tiny.guides["busy_server"], "two")
    assert not chat.state.guide.paused
    assert chat.say("没有").intent == "handoff"


def test_a_paused_guide_resumes_by_number_or_by_typing_continue(tiny):
    chat = Chat(tiny, "resume")
    chat.start("busy_server")
    reply = chat.say("我想查发票状态")
    assert reply.options[-1].payload == "guide:resume"
    assert "第一个问题" in chat.say(str(len(reply.options))).text
    chat.say("明天北京天气怎么样")
    chat.say("发票查验每天能查几次")
    assert "第一个问题" in chat.say("继续").text


def test_a_paused_guide_can_be_restarted_or_ended(tiny):
    chat = Chat(tiny, "paused-commands")
    chat.start("busy_server")
    chat.say("1")
    chat.say("发票查验每天能查几次")
    restarted = chat.say("重来")
    assert restarted.intent == "guide" and "第一个问题" in restarted.text and chat.state.guide.path == []
    chat.say("发票查验每天能查几次")
    assert "已结束" in chat.say("退出").text and chat.state.guide is None


def test_a_paused_guide_is_dropped_after_a_few_other_questions(tiny):
    chat = Chat(tiny, "idle")
    chat.start("busy_server")
    for _ in range(guide_handler.MAX_IDLE):
        assert chat.say("发票查验每天能查几次").options[-1].payload == "guide:resume"
    last = chat.say("发票查验每天能查几次")
    assert all(o.payload != "guide:resume" for o in last.options)
    assert chat.state.guide is None


def test_another_guided_topic_mid_guide_offers_both(router):
    chat = Chat(router, "two-guides")
    chat.start("busy_server")
    reply = chat.say("查验发票提示查无此票")
    assert reply.intent == "answer" and reply.topic == "verify_not_found"
    assert [o.payload for o in reply.options] == ["guide:start:verify_not_found", "guide:resume"]
    started = chat.say("1")
    assert started.intent == "guide" and started.topic == "verify_not_found"


def test_the_same_topic_mid_guide_asks_the_question_again(router):
    chat = Chat(router, "same")
    chat.start("busy_server")
    chat.say("1")
    reply = chat.say("还是提示服务器繁忙，请稍后再试")
    assert reply.intent == "guide" and "正在排查这个问题" in reply.text
    assert chat.state.guide.step == "submitted"


def test_a_number_that_is_no_option_asks_again(tiny):
    chat = Chat(tiny, "range")
    chat.start("busy_server")
    reply = chat.say("5")
    assert reply.intent == "guide" and "1-2" in reply.text and "第一个问题" in reply.text
    assert not chat.state.guide.paused


def test_yes_and_no_pick_the_matching_option(tiny):
    chat = Chat(tiny, "polar")
    chat.start("busy_server")
    chat.say("第一个")
    assert "这样修" in chat.say("是的").text
    assert chat.say("嗯").intent == "guide" and chat.state.guide is None  # "解决了"


def test_guide_progress_survives_the_store_and_junk_is_ignored(tiny):
    chat = Chat(tiny, "store")
    chat.start("busy_server")
    chat.say("1")
    assert chat.state.guide == GuideProgress("busy_server", "two", [["busy_server", "one", "去第二步"]])
    tiny.store.set_json("chat:api:junk", {"guide": {"guide": 3}, "turns": 2})
    assert load(store=tiny.store, channel="api", user_id="junk").guide is None


def test_progress_in_a_guide_that_no_longer_exists_is_dropped(tiny):
    progress = GuideProgress("busy_server", "removed_step")
    save(store=tiny.store, channel="api", user_id="gone", state=ChatState(guide=progress), ttl=60)
    reply = Chat(tiny, "gone").say("1")
    assert reply.intent != "guide"
    assert Chat(tiny, "gone").state.guide is None


def test_shipped_guide_files_are_package_data():
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert '"guides/*.yaml"' in pyproject
