"""How merchants really phrase greetings, small talk and asking for a person.

Each intent is a small vocabulary, not one growing regex: greetings and small talk are recognised when the whole
message splits into known words (particles, forms of address and emoji drop out; latin words match fuzzily); a
request for a person is a request verb before a person word, a person word asked after ("客服呢"), a call back to
"我", a complaint made by the merchant, or the bot called useless. Messages typed in pinyin ("zhuan rengong",
"xiexie") are first read back as these vocabularies' Han words. Labelled phrasings: tests/knowledge/phrasings.py.
"""

import re
import unicodedata
from functools import lru_cache

from rapidfuzz import fuzz, process

from core.text import fold, pinyin_syllables, units
from knowledge.pinyin import PinyinIndex

# How close a typed latin word must be to a known one (rapidfuzz ratio, 0-100), e.g. "helo", "thnks".
LATIN_SIMILARITY = 80
# Messages longer than this (in units) are questions, not greetings or small talk.
MAX_CHAT_UNITS = 16


def words(spaced: str) -> list[str]:
    """The words of a space-separated vocabulary line."""
    return spaced.split()


PARTICLES = "呀啊吗嘛呢吧啦哈哦喔噢么滴呗哇嘞咯耶鸭了"
ADDRESS = words(
    "老师 亲 亲亲 您 你 你们 您们 小姐姐 小哥哥 师傅 美女 帅哥 兄弟 哥 姐 老板 大家 同志 朋友 宝 亲爱的 小助手 客服"
)
GREET = words(
    "你好 您好 哈喽 哈罗 嗨 hi hello hey hallo 在吗 在么 在嘛 在不在 在不 在 有人吗 有人么 有人在吗 有人在不 有人不"
    " 有没有人 有人 早上好 上午好 中午好 下午好 晚上好 早 早安 午安 菜单 帮助 help menu start 开始 请问 打扰了"
    " 打扰一下 机器人 小助手"
) + [f"{a}好" for a in ADDRESS]
THANKS = words(
    "谢谢 谢谢你 谢谢您 谢了 谢啦 多谢 感谢 感恩 太感谢了 非常感谢 十分感谢 万分感谢 蟹蟹 3q thanks thank thx ty"
    " you 帮大忙了 辛苦了 辛苦 麻烦了 麻烦你了 麻烦您了 费心了"
)
ACK = words(
    "好的 好 好滴 好哒 好嘞 好吧 行 行吧 行了 可以 可以了 ok okay okk 嗯 嗯呢 嗯好 哦 噢 明白 明白了 知道了 我知道了"
    " 了解 了解了 收到 懂了 清楚了 原来如此 原来是这样 是这样 这样啊 没问题 没事 没事了 妥 对 是的 get 那 我先去试试"
    " 我去试试 我试试 我再试试 先去试试 试试看 去试试 好的呢"
)
BYE = words("再见 拜拜 拜 bye byebye 88 886 晚安 回头见 下次见 先这样 就这样 没有了 没别的了 没其他问题了")
LAUGH = words("哈 呵 嘿 嘻 嘎 lol haha hh hhh xswl 233 666 6")
_LATIN_LAUGH = re.compile(r"^(h+|(ha)+h?|(he)+|2333*|6{2,}|lo+l)$")

# Which kind a word is; kinds of no content ("filler") never decide what a message is.
_KINDS = {**dict.fromkeys(ADDRESS, "filler"), **dict.fromkeys(PARTICLES, "filler")}
for _kind, _words in (("laugh", LAUGH), ("ack", ACK), ("bye", BYE), ("thanks", THANKS), ("greeting", GREET)):
    _KINDS.update(dict.fromkeys(_words, _kind))
_CHAT_KINDS = ("bye", "thanks", "laugh", "ack")  # priority when a message mixes them ("好的 谢谢 再见" is a goodbye)


@lru_cache(maxsize=1)
def _vocabulary() -> tuple[dict[tuple[str, ...], str], list[str], int]:
    """Words as unit tuples → kind, the latin words (for fuzzy matching), and the longest word in units."""
    words = {tuple(units(fold(word))): kind for word, kind in _KINDS.items()}
    latin = [w[0] for w in words if len(w) == 1 and w[0].isascii() and len(w[0]) >= 3]
    return words, latin, max(len(w) for w in words)


def _latin_kind(unit: str) -> str | None:
    """The kind of a latin or digit word typed a little off ("helo", "hhhh", "thnks"); None when unknown."""
    if _LATIN_LAUGH.match(unit):
        return "laugh"
    if len(unit) < 3 or not unit.isascii():
        return None
    words, latin, _ = _vocabulary()
    best = process.extractOne(unit, latin, scorer=fuzz.ratio, score_cutoff=LATIN_SIMILARITY)
    return words[(best[0],)] if best else None


def segment(text: str) -> list[str] | None:
    """The kinds of the known words the whole message splits into (fewest words); None when some part is unknown."""
    parts = units(fold(read(text)))
    if not parts or len(parts) > MAX_CHAT_UNITS:
        return None
    words, _, longest = _vocabulary()
    best: list[list[str] | None] = [[]] + [None] * len(parts)
    for end in range(1, len(parts) + 1):
        for size in range(1, min(longest, end) + 1):
            before = best[end - size]
            if before is None:
                continue
            piece = tuple(parts[end - size : end])
            kind = words.get(piece) or (_latin_kind(piece[0]) if size == 1 else None)
            if kind is not None and (best[end] is None or len(before) + 1 < len(best[end])):
                best[end] = [*before, kind]
    return best[-1]


def is_emoji_only(text: str) -> bool:
    """True when the message is only emoji (and spaces or punctuation): a reaction, such as 👍 or 😂."""
    folded = fold(text)
    if units(folded):
        return False
    return any(_is_emoji(ch) for ch in folded)


def _is_emoji(ch: str) -> bool:
    """True for an emoji or pictograph (not the replacement character of a garbled message)."""
    code = ord(ch)
    return unicodedata.category(ch) == "So" and (0x2190 <= code <= 0x2BFF or code >= 0x1F000)


def is_greeting(text: str) -> bool:
    """True when the message only greets ("你好呀", "在吗？", "您好😊", "hello", "老师好🙏") or asks for the menu."""
    kinds = segment(text)
    return kinds is not None and "greeting" in kinds


_IDENTITY = re.compile(
    r"^(你|您|你们)?(到底|究竟)?(是不是|是)(个|一个)?(机器人|真人|人工智能|ai|谁|robot|bot|程序|自动回复|gpt|chatgpt|人吗"
    r"|人还是|真的人|活人)"
)
_WHO = re.compile(r"^(你|您)(叫什么|叫啥|哪位|是哪位)")


COURTESY_KINDS = ("thanks", "ack", "bye", "laugh", "emoji")  # small talk that asks nothing ("identity" does)


def small_talk(text: str) -> str | None:
    """The kind of small talk a message is: "thanks", "ack", "bye", "laugh", "emoji" or "identity"; None otherwise."""
    if is_emoji_only(text):
        return "emoji"
    squeezed = "".join(units(fold(read(text))))
    if len(squeezed) <= MAX_CHAT_UNITS * 2 and (_IDENTITY.match(squeezed) or _WHO.match(squeezed)):
        return "identity"
    kinds = segment(text)
    if kinds is None or "greeting" in kinds:
        return None
    return next((kind for kind in _CHAT_KINDS if kind in kinds), None)


def is_courtesy(text: str) -> bool:
    """True when the message is only thanks, an "ok", a goodbye, laughter or emoji ("好的谢谢", "👍")."""
    return small_talk(text) in COURTESY_KINDS


# --- asking for a person ---------------------------------------------------------------------------------------

PERSON = words("人工客服 人工服务 人工坐席 真人客服 客服人员 人工 真人 活人 客服 工作人员 售后")
EXPERT = words("懂行的 懂的人 懂的 内行 专业的 专业人士 专业人员 专家 技术人员 技术支持 技术 工程师 明白人 会计老师")
MANAGER = words("领导 经理 主管 负责人 上级 老板")
VERBS = words("帮我转 帮我找 给我找 给我转 转接 转 找 要 叫 换 接 联系 请 喊 来 需要 让 派 安排 有没有 有")
SOMEONE_VERBS = words("找 换 叫 来 要 喊 派 让 安排")  # before a bare 人 ("有人" is a greeting)
FILL = words("一个 一位 个 位 你们的 你们 您们 一下 给我 真的 下 直接 赶紧 快")
# What may follow a person word: the end of a clause, a particle, or words of talking to someone.
FOLLOW = words(
    "来 过来 出来 在 跟 和 帮 对接 处理 沟通 聊 说 接 回 给 电话 介入 解决 看看 看下 啊 吧 呢 吗 嘛 呀 啦 了 好 行"
)
COMPOUND = words("人工客服 人工服务 人工坐席 真人客服 转人工")  # a request wherever they stand
ASKED_AFTER = words("呢 在哪 在哪里 在哪儿 去哪了 哪去了 都去哪了 人呢 怎么不回 怎么没人 没人回 死哪去了")
USELESS = words("不行 听不懂 不懂 没用 太笨 真笨 好笨 啥也不懂 什么都不懂 都不懂 答非所问 垃圾 不靠谱 靠不住 没法沟通")
UNWANTED = words("不要机器人 别用机器人 不想跟机器人 不跟机器人 不和机器人 不要自动回复 别自动回复")


def _any(words: list[str]) -> str:
    return "(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + ")"


# Characters that make a request verb part of another word: 原来, 后来, 本来 (a story, not a request).
_NOT_AFTER = "(?<![原后本从将出起回过])"
_END = rf"(?=\||$|{_any(FOLLOW)})"
_TARGETS = _any(PERSON + EXPERT + MANAGER) + rf"{_any(['人工', '人员', '人', '老师', '客服'])}?"
_HANDOFF_PATTERNS = (
    rf"{_any(COMPOUND)}{_END}",  # 人工客服, 转人工
    rf"{_NOT_AFTER}{_any(VERBS)}{_any(FILL)}{{0,2}}{_TARGETS}{_END}",  # 找个懂行的, 叫你们经理来, 有没有真人
    rf"{_NOT_AFTER}{_any(SOMEONE_VERBS)}{_any(FILL)}{{0,2}}人{_END}",  # 换个人来
    rf"(?:^|\|)(?:那|那你们|你们的?)?{_any(PERSON + MANAGER + ['人'])}{_any(ASKED_AFTER)}",  # 你们客服呢, 人呢
    rf"(?:^|\|){_any(PERSON + MANAGER + ['投诉'])}(?:\||$)",  # the whole clause: 人工, 经理
    r"给我(?:回|打|来)(?:个|一个|一下)?电话|(?:回|打)(?:个|一个|一下)?电话给我|打我电话|电话联系我|致电我"
    r"|(?:^|\|)(?:请|麻烦)?回(?:个|一个)?电话",  # a call back
    rf"(?:机器人|智障|人工智障|ai|自动回复).{{0,6}}{_any(USELESS)}|{_any(UNWANTED)}",  # the bot is no use
    r"(?:^|\||我|要|想|我要|我想|必须)投诉|投诉你们|举报你们|我要举报",  # a complaint by the merchant
)
_HANDOFF = re.compile("|".join(f"(?:{p})" for p in _HANDOFF_PATTERNS))


def clauses(text: str) -> str:
    """The folded text with every run of punctuation, spaces and emoji as one "|" (a clause break)."""
    return "|".join(re.sub(r"[^\w]+", " ", fold(read(text))).split())


def wants_person(text: str) -> bool:
    """True when the merchant asks for a person, someone who knows, a manager or a call back, or complains."""
    return bool(_HANDOFF.search(clauses(text)))


NUDGES = words("有人 有人在 有没有人 人 人都去哪了 人去哪了 在 在不在 还在 怎么没人 没人 没人回 有人不")
_NUDGE = re.compile(rf"(?:{_any(ADDRESS)})?(?:{_any(NUDGES)}[{PARTICLES}]*)+")


def is_nudge(text: str) -> bool:
    """True when a merchant waiting for a person asks whether anyone is there ("有人吗", "人呢", "在吗？")."""
    return bool(_NUDGE.fullmatch("".join(units(fold(read(text))))))


# --- typed pinyin ------------------------------------------------------------------------------------------------

# Words typed in pinyin next to the vocabularies' own ("wo yao ren gong kefu" is 我要人工客服).
PINYIN_EXTRA = words(
    "找个 叫个 换个 来个 要个 找个人 换个人 来个人 懂行的人 我要 我想 我需要 我找 帮我 给我 请问 你们 嗯嗯 哈哈 好好"
    " 谢谢你们 有人在吗 在吗在吗 投诉 举报 回电话 回个电话 打电话 打个电话 机器人"
)


@lru_cache(maxsize=1)
def _pinyin() -> PinyinIndex:
    """Toneless pinyin of every word above, back to its Han spelling; the vocabularies' latin words stay as typed."""
    vocabulary = [
        *_KINDS,
        *PERSON,
        *EXPERT,
        *MANAGER,
        *VERBS,
        *SOMEONE_VERBS,
        *FILL,
        *FOLLOW,
        *COMPOUND,
        *ASKED_AFTER,
        *USELESS,
        *UNWANTED,
        *NUDGES,
        *PINYIN_EXTRA,
    ]
    syllables = pinyin_syllables()  # "you" may be 有: only latin words that are no pinyin stay as typed
    return PinyinIndex(vocabulary, protected=[w for w in vocabulary if w.isascii() and w not in syllables])


@lru_cache(maxsize=1024)
def read(text: str) -> str:
    """The message with pinyin stretches ("zhuan rengong", "xiexie") written in Han words; other text as typed."""
    return _pinyin().convert(text)
