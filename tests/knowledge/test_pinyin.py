"""Merchants typing pinyin, mixed pinyin and shorthand reach the topic of the Han form; codes and numbers stay
untouched; the labelled styles set (bench/data/styles.jsonl) is well-formed."""

import json

import pytest

from core.text import Lexicon
from knowledge import service
from knowledge.matcher import Matcher, Topic, load_lexicon
from tests.conftest import REPO

STYLES = {"pinyin", "mixed", "shorthand", "typo", "long_story", "smalltalk", "handoff", "greeting"}


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    entries = service.default_entries()
    topics = [Topic(e.id, e.question, tuple(e.alternates), tuple(e.keywords), e.answer) for e in entries]
    return Matcher(topics, lexicon=load_lexicon(), embedder=None)


@pytest.mark.parametrize(
    ("typed", "hanzi"),
    [
        ("fapiao zenme zuofei", "发票怎么作废"),
        ("发票zuofei怎么弄", "发票作废怎么弄"),
        ("hongchong", "红冲"),
        ("shuikong pan suoding le", "税控盘锁定了"),
        ("kaipiao edu bugou le", "开票额度不够了"),
        ("dianzi shuiwuju denglu mima wangji le", "电子税务局登录密码忘记了"),
        ("fapiao taitou xiecuo le", "发票抬头写错了"),
        ("qingka shibai", "清卡失败"),
        ("chongkai fapiao", "重开发票"),  # 重 read chong, not its usual zhong
        ("UK识别不了", "税务UKey识别不了"),
        ("税务U盾检测不到", "税务UKey检测不到"),
        ("hc怎么操作", "红冲怎么操作"),
        ("红充怎么操作", "红冲怎么操作"),
        ("冲红怎么操作", "红冲怎么操作"),
        ("zp当月开错了能作废吗", "增值税专用发票当月开错了能作废吗"),
        ("pp要填税号吗", "增值税普通发票要填税号吗"),
        ("全电票额度不够", "数电票额度不够"),
        ("skp以前开的专票怎么开红字", "税控盘以前开的专票怎么开红字"),
    ],
)
def test_typed_form_reaches_the_han_topic(matcher, typed, hanzi):
    typed_result, hanzi_result = matcher.match(typed), matcher.match(hanzi)
    assert hanzi_result.candidates, hanzi
    assert typed_result.candidates[0].topic == hanzi_result.candidates[0].topic
    assert typed_result.outcome == hanzi_result.outcome


@pytest.mark.parametrize(
    ("typed", "hanzi"),
    [
        ("fapiao zenme zuofei", "发票怎么作废"),
        ("shuikong pan suoding le", "税控盘锁定了"),
        ("发票zuofei怎么弄", "发票作废怎么弄"),
        ("dianzi fapiao meishoudao", "电子发票没收到"),
        ("wo de ukey mima wangle", "我的 ukey 密码忘了"),  # ukey stays a word among pinyin
    ],
)
def test_pinyin_reads_back_as_han_words(matcher, typed, hanzi):
    assert matcher.pinyin.convert(typed) == hanzi


@pytest.mark.parametrize(
    "text",
    [
        "开票提示09d11f",  # error code
        "发票号码24112000000012345678查不到",  # digital invoice number
        "税号91310000ma1fl4xq3r开不了",  # tax id with letters
        "how can he long",  # English that happens to spell pinyin syllables
        "ca证书 pdf ofd xml",  # the vocabulary's own latin words
        "xi'an",  # no vocabulary word: left as typed
    ],
)
def test_codes_numbers_and_english_are_untouched(matcher, text):
    assert matcher.pinyin.convert(text) == text


def test_error_code_next_to_pinyin_still_hits_its_topic(matcher):
    assert matcher.pinyin.convert("kaipiao tishi 09D11F") == "开票提示 09d11f"
    result = matcher.match("kaipiao tishi 09D11F")
    assert result.outcome == "answer" and result.topic == "issue_offline_limit"


def test_abbreviation_only_replaces_a_whole_latin_word():
    lexicon = Lexicon(abbreviations={"ukey": ["uk"], "红冲": ["hc"]})
    assert lexicon.canonicalize("uk识别不了") == "ukey识别不了"
    assert lexicon.canonicalize("duke uks hc2") == "duke uks hc2"
    assert lexicon.canonicalize("hc 一下") == "红冲 一下"


def test_styles_set_is_valid():
    topics = {e.id for e in service.default_entries()}
    lines = (REPO / "bench" / "data" / "styles.jsonl").read_text(encoding="utf-8").splitlines()
    items = [json.loads(line) for line in lines if line.strip()]
    assert len(items) >= 150
    assert len({i["text"] for i in items}) == len(items), "duplicate texts"
    for item in items:
        assert item["style"] in STYLES, item
        assert item["expect"] in {"answer", "not_answer", "handoff", "greeting"}, item
        assert isinstance(item["text"], str) and item["text"].strip(), item
        if item["expect"] == "answer":
            assert item["topic"] in topics, item
        if "source" in item:
            assert item["source"].startswith("http"), item
    assert {i["style"] for i in items} == STYLES
