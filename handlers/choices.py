"""Reading which offered option a message picks: by number ("2", "第二个", "选3"), by the option's words, or by a
short yes or no."""

import re

from rapidfuzz import fuzz, process

from core.text import fold, units

# How close typed words must be to an option's label (rapidfuzz ratio, 0-100) to pick it.
CHOICE_SIMILARITY = 80
_CHINESE_ORDINALS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_YES = {"是", "是的", "是啊", "对", "对的", "对啊", "嗯", "嗯嗯", "有", "有的", "有啊", "能", "可以", "可以了"}
_YES |= {"好了", "行了", "解决了", "已经解决了", "搞定了", "已经", "亮", "亮了", "ok", "yes"}
_NO = {"否", "不", "不是", "不是啊", "不对", "没", "没有", "没有啊", "不能", "不行", "不可以", "还不行", "还是不行"}
_NO |= {"没解决", "还没解决", "还没", "还没有", "没用", "no"}
_YES_LABEL = ("是", "有", "能", "已", "对", "亮", "可以", "解决")
_NO_LABEL = ("不", "没", "否", "未", "还没", "还是")
_NUMBER = re.compile(r"^[0-9]+$")
_CHOICE = re.compile(
    r"^(?:第|选|选择|选第|我选|就|要)?\s*([1-9]|[一二两三四五六七八九])\s*(?:个|条|项|号)?(?:吧|的|啊|呢)?$"
)


def parse_choice(text: str, count: int) -> int | None:
    """The 0-based option picked by a reply such as "2", "第二个" or "选3"; None when it is not a choice."""
    folded = re.sub(r"[\s,，.。!！~～]", "", fold(text))
    match = _CHOICE.match(folded)
    if not match:
        return None
    token = match.group(1)
    number = int(token) if token.isdigit() else _CHINESE_ORDINALS[token]
    return number - 1 if 1 <= number <= count else None


def choose(text: str, pending: list[dict[str, str]]) -> str | None:
    """The payload of the option a reply picks: by number ("2", "第二个") or by its words; None otherwise."""
    picked = parse_choice(text, len(pending))
    if picked is not None:
        return pending[picked]["payload"]
    labels = [fold(option["label"]) for option in pending]
    best = process.extractOne(fold(text), labels, scorer=fuzz.ratio, score_cutoff=CHOICE_SIMILARITY)
    return pending[best[2]]["payload"] if best else None


def squeeze(text: str) -> str:
    """Folded text without punctuation or spaces."""
    return "".join(units(fold(text)))


def by_yes_or_no(text: str, labels: list[str]) -> int | None:
    """The one yes-like or no-like label a short "是的" / "没有" answers; None when there is not exactly one."""
    squeezed = squeeze(text)
    prefixes = _YES_LABEL if squeezed in _YES else _NO_LABEL if squeezed in _NO else None
    if prefixes is None:
        return None
    fitting = [i for i, label in enumerate(labels) if _polar(label) == prefixes]
    return fitting[0] if len(fitting) == 1 else None


def is_bare_answer(text: str) -> bool:
    """True for a bare number or yes/no that fits no option: the question is asked again, not routed elsewhere."""
    squeezed = squeeze(text)
    return bool(_NUMBER.match(squeezed)) or squeezed in _YES or squeezed in _NO


def by_words(text: str, labels: list[str]) -> int | None:
    """The label typed (exactly, nearly, or contained in a short message); None when unclear."""
    typed = squeeze(text)
    if not typed:
        return None
    squeezed = [squeeze(label) for label in labels]
    if typed in squeezed:
        return squeezed.index(typed)
    best = process.extractOne(typed, squeezed, scorer=fuzz.ratio, score_cutoff=CHOICE_SIMILARITY)
    if best is not None:
        return best[2]
    inside = [i for i, s in enumerate(squeezed) if len(s) >= 2 and s in typed and len(typed) <= len(s) + 8]
    if len(inside) == 1:
        return inside[0]
    part_of = [i for i, s in enumerate(squeezed) if len(typed) >= 2 and typed in s]
    return part_of[0] if len(part_of) == 1 else None


def _polar(label: str) -> tuple[str, ...] | None:
    squeezed = squeeze(label)
    if squeezed.startswith(_NO_LABEL):
        return _NO_LABEL
    if squeezed.startswith(_YES_LABEL):
        return _YES_LABEL
    return None


# Words that open a yes or a no answer ("不是，上个月开的"); 没错/不错 say yes although they start like a no.
_YES_LEAD = ("没错", "不错", "是的", "是啊", "是", "对的", "对", "嗯", "有的", "有", "可以", "能", "已经", "好了")
_NO_LEAD = ("不是", "没有", "不对", "不能", "不行", "没", "不", "否", "还没", "还是不")
# Unsure replies start like a no but are none ("不知道" is no "不是").
_UNSURE = ("不知道", "不清楚", "不确定", "不记得", "不太", "不懂", "不会", "没注意", "没看", "没留意")
_QUESTION = re.compile(r"吗|么|呢|怎|如何|为什么|哪|啥|几|？|\?")
_FREE_REPLY_CHARS = 16  # longer messages are questions of their own, not answers in words
# Characters that say nothing about which option is meant.
_FILLER = frozenset("的了是吗呢啊吧呀哦嗯就都也还我您你这那个一")
# A reply in words without a yes or no picks a label only when most of it is in the label and it covers a good part.
_REPLY_COVER, _LABEL_COVER = 0.6, 0.3


def polarity(text: str) -> str | None:
    """ "yes" or "no" when a short reply opens with a yes or a no ("不是，上个月开的", "对，是今天"); None otherwise."""
    if _QUESTION.search(text):
        return None
    squeezed = squeeze(text)
    if not squeezed or len(squeezed) > _FREE_REPLY_CHARS or squeezed.startswith(_UNSURE):
        return None
    for lead, words in (("yes", _YES_LEAD), ("no", _NO_LEAD)):
        for word in words:
            if squeezed.startswith(word):
                return lead
    return None


def by_meaning(text: str, labels: list[str]) -> int | None:
    """The label a free reply in words picks: its yes/no (when exactly one option fits it, or the words tell which)
    and the characters it shares with each label; None when unclear."""
    squeezed = squeeze(text)
    if not squeezed or len(squeezed) > _FREE_REPLY_CHARS or _QUESTION.search(text):
        return None
    said = polarity(text)
    if said is not None:
        signs = [_sign(label) for label in labels]
        if "no" in signs:  # in a yes/no pair, an option that does not say no means yes ("包含" / "不包含或不确定")
            signs = [sign or "yes" for sign in signs]
        fitting = [i for i, sign in enumerate(signs) if sign == said]
        if len(fitting) == 1:
            return fitting[0]
        if fitting:
            return _closest(squeezed, labels, fitting)
        return None
    return _closest(squeezed, labels, range(len(labels)), minimum=2)


def _sign(label: str) -> str | None:
    squeezed = squeeze(label)
    if squeezed.startswith(("没错", "不错")):
        return "yes"
    if squeezed.startswith(_NO_LABEL):
        return "no"
    return "yes" if squeezed.startswith(_YES_LABEL) else None


def _closest(squeezed: str, labels: list[str], among, minimum: int = 1) -> int | None:
    """The label among `among` sharing the most meaningful characters with the reply, when it clearly leads; with
    `minimum` above 1, the shared characters must also make up most of the reply and a good part of the label."""
    said = set(squeezed) - _FILLER
    scores = []
    for i in among:
        label = set(squeeze(labels[i])) - _FILLER
        shared = len(said & label)
        close = minimum <= 1 or (shared >= _REPLY_COVER * len(said) and shared >= _LABEL_COVER * len(label))
        scores.append((shared if close else 0, i))
    scores.sort(reverse=True)
    if not scores or scores[0][0] < minimum or (len(scores) > 1 and scores[1][0] == scores[0][0]):
        return None
    return scores[0][1]


_LABEL_ASIDE = re.compile(r"（[^）]*）|\([^)]*\)")
_LABEL_PARTS = re.compile(r"[，,、/]|或")
_VAGUE = frozenset({"不确定", "不清楚", "都不是", "都没有", "其他", "没有", "都一致"})
_NEGATED = "不没非未"  # within the 3 characters before a part, it negates the part


def mentioned(text: str, labels: list[str]) -> int | None:
    """The one label a description already names ("数电票红冲了" names "数电票（20位号码）"); None when no label or
    several are named. Labels that say no, vague parts and parts typed negated ("不是数电票") never count."""
    folded = squeeze(text)
    named = []
    for index, label in enumerate(labels):
        if _sign(label) == "no":
            continue
        parts = [squeeze(part) for part in _LABEL_PARTS.split(_LABEL_ASIDE.sub("", label))]
        for part in parts:
            if len(part) < 2 or part in _VAGUE:
                continue
            at = folded.find(part)
            if at >= 0 and not any(c in _NEGATED for c in folded[max(0, at - 3) : at]):
                named.append(index)
                break
    return named[0] if len(named) == 1 else None


# Words a yes/no label opens with, longest first; the rest of its first part is what the question asks about.
_POLAR_LEADS = ("还没有", "已经", "还没", "没有", "尚未", "还是", "不是", "已", "没", "不", "未", "是", "有")
_DONE_BEFORE = ("已", "都")  # "已经确认了", "都核对过"
_DONE_AFTER = ("了", "过", "好")
_ASKED_AFTER = ("吗", "么", "没", "嘛")


def polar_mentioned(text: str, labels: list[str]) -> int | None:
    """On a yes/no question, the label a description answers by typing what the question asks about negated
    ("对方还没确认", "尚未确认" → "还没有") or done ("已经确认了" → "已经确认了"); None when it says neither."""
    folded = squeeze(text)
    signs = [_sign(label) for label in labels]
    unsure = [any(word in squeeze(label) for word in _UNSURE) for label in labels]
    said = None
    for word in {w for w, sure in zip(map(_asked_about, labels), unsure, strict=True) if w and not sure}:
        at = folded.find(word)
        while at >= 0:
            before, after = folded[max(0, at - 3) : at], folded[at + len(word) : at + len(word) + 2]
            if any(c in _NEGATED for c in before):
                said = "no" if said in (None, "no") else "both"
            elif (before.endswith(_DONE_BEFORE) or after.startswith(_DONE_AFTER)) and not after.endswith(_ASKED_AFTER):
                said = "yes" if said in (None, "yes") else "both"
            at = folded.find(word, at + 1)
        if said is not None:
            break
    if said == "no":
        fitting = [i for i, sign in enumerate(signs) if sign == "no" and not unsure[i]]
    elif said == "yes":
        fitting = [i for i, sign in enumerate(signs) if sign != "no" and word in squeeze(labels[i])]
    else:
        return None
    return fitting[0] if len(fitting) == 1 else None


def _asked_about(label: str) -> str | None:
    """What a yes/no label says was done or not ("已经确认了" → "确认", "还没核对" → "核对"); None for other labels."""
    first = squeeze(_LABEL_PARTS.split(_LABEL_ASIDE.sub("", label))[0])
    lead = next((word for word in _POLAR_LEADS if first.startswith(word)), None)
    if lead is None:
        return None
    word = first[len(lead) :].rstrip("了过的")
    return word if len(word) >= 2 else None
