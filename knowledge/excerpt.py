"""Bounded matcher input: a long message is cut, and reduced to its most informative clauses (pasted error text,
questions, invoice/tax terms) so that a long story still matches its question at a bounded cost."""

import re

from core.limits import EXCERPT_CHARS, MATCH_MAX_CHARS
from core.text import Lexicon, clean, error_codes, fold

_CLAUSE = re.compile(r"[^。！？!?；;，,\n…~～]+[。！？!?；;，,\n…~～]*")
_ERROR_TEXT = re.compile(
    r"提示|报错|错误|失败|显示|弹出|异常|无法|(?<!能)不能|不了|不出|不上|不到|不让|不成功|不行|超限|过期|锁|找不|没收到"
)
_QUESTION = re.compile(
    r"[吗么呢?？]|怎|如何|为什么|为啥|咋|能否|能不能|可以|可不可以|是否|哪|什么|啥|多少|几[天次个张]|要不要"
)
_DIGITS = re.compile(r"\d+")
_NOISE = re.compile(r"生气|气死|垃圾|差劲|太差|投诉|骂|烦死|无语|崩溃|受不了|急死|服了|坑")


def cut(text: str, limit: int = MATCH_MAX_CHARS) -> str:
    """The start of a text, at most `limit` characters."""
    return text[:limit]


def excerpt(text: str, *, limit: int = EXCERPT_CHARS, lexicon: Lexicon | None = None) -> str:
    """The text itself when short enough, else its best-scoring clauses (in their order) within `limit` characters.

    Only the first MATCH_MAX_CHARS characters are looked at."""
    text = clean(cut(text))
    if len(text) <= limit:
        return text
    # A repeated clause adds nothing (numbers aside: "1 张开不了，2 张开不了" says one thing).
    clauses = list({_DIGITS.sub("", c.strip()): c.strip() for c in reversed(_CLAUSE.findall(text))}.values())[::-1]
    scored = [(score(c, lexicon), i, c) for i, c in enumerate(clauses) if c]
    best = max((value for value, _, _ in scored), default=0.0)
    floor = max(0.0, best - 2)  # only clauses nearly as telling as the best: filler dilutes the match
    chosen: list[tuple[int, str]] = []
    room = limit
    # Best first; among equals the later clause (a story usually ends with its question).
    for value, index, clause in sorted(scored, key=lambda s: (-s[0], -s[1])):
        if value <= floor or room <= 0:
            break
        if len(clause) > room:
            if chosen:
                continue
            clause = clause[:room]
        chosen.append((index, clause))
        room -= len(clause)
    if not chosen:
        return text[:limit]
    return "".join(c for _, c in sorted(chosen))[:limit]


def score(clause: str, lexicon: Lexicon | None = None) -> float:
    """How much a clause tells about the merchant's problem: error codes and messages, questions, domain terms."""
    folded = fold(clause)
    value = 0.0
    if error_codes(folded):
        value += 5
    if _ERROR_TEXT.search(folded):
        value += 2
    if _QUESTION.search(folded):
        value += 2
    if lexicon is not None and lexicon.is_domain(lexicon.canonicalize(folded)):
        value += 3
    if _NOISE.search(folded):
        value -= 3
    if len(folded) < 4:
        value -= 1
    return value
