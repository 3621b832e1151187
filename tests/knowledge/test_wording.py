"""Each labelled phrasing (tests/knowledge/phrasings.py) is read as what it is: a request for a person, a greeting,
small talk, or none of these (an in-domain question the matcher must get)."""

import pytest

from knowledge import wording
from tests.knowledge.phrasings import GREETING, HANDOFF, NEITHER, SMALL_TALK


def test_the_labelled_lists_are_big_enough_to_mean_something():
    assert (len(HANDOFF), len(GREETING), len(SMALL_TALK), len(NEITHER)) >= (40, 20, 30, 30)
    texts = HANDOFF + GREETING + [t for t, _ in SMALL_TALK] + NEITHER
    assert len(texts) == len(set(texts)), "each phrasing carries one label"


@pytest.mark.parametrize("text", HANDOFF)
def test_asking_for_a_person(text):
    assert wording.wants_person(text)


@pytest.mark.parametrize("text", GREETING)
def test_greeting(text):
    assert wording.is_greeting(text) and not wording.wants_person(text) and wording.small_talk(text) is None


@pytest.mark.parametrize(("text", "kind"), SMALL_TALK)
def test_small_talk(text, kind):
    assert wording.small_talk(text) == kind
    assert not wording.wants_person(text) and not wording.is_greeting(text)


@pytest.mark.parametrize("text", NEITHER)
def test_in_domain_questions_are_left_to_the_matcher(text):
    assert not wording.wants_person(text), "not a handoff"
    assert not wording.is_greeting(text) and wording.small_talk(text) is None


NUDGES = ["有人吗", "人呢", "人呢？？", "在吗", "还在吗", "有人在吗😭", "亲 在不在", "人都去哪了"]
NUDGES += ["you ren ma", "ren ne"]  # typed in pinyin


@pytest.mark.parametrize("text", NUDGES)
def test_nudges_while_waiting_for_a_person(text):
    assert wording.is_nudge(text)


@pytest.mark.parametrize("text", ["发票开不出来", "在哪里下载开票软件", "谢谢", "人工开票"])
def test_other_messages_are_not_nudges(text):
    assert not wording.is_nudge(text)


@pytest.mark.parametrize("text", ["\ufffd\ufffd\ufffd", "？？？", "...", ""])
def test_garbled_or_punctuation_only_is_not_a_reaction(text):
    assert not wording.is_emoji_only(text) and wording.small_talk(text) is None


@pytest.mark.parametrize(
    ("typed", "han"),
    [
        ("zhuan rengong", "转人工"),
        ("xiexie", "谢谢"),
        ("haode xiexie", "好的谢谢"),
        ("nihao", "你好"),
        ("ok xiexie", "ok 谢谢"),
    ],
)
def test_pinyin_is_read_as_the_vocabularies_han_words(typed, han):
    assert wording.read(typed) == han


@pytest.mark.parametrize("text", ["ok", "UKey", "hello", "thanks", "menu", "haha", "fapiao zenme zuofei"])
def test_latin_words_and_unknown_pinyin_stay_as_typed(text):
    assert wording.read(text) == text.lower()
