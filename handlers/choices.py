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
