"""FAQ answers, and the numbered choice offered when the matcher is between topics."""

import re

from core.messages import Option, Reply
from core.text import fold
from handlers.turn import Turn
from knowledge.matcher import MatchResult

_CHINESE_ORDINALS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
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


def answer(turn: Turn, topic_id: str, confidence: float | None, candidates: list[str] | None = None) -> Reply:
    """Answer with one FAQ entry."""
    entry = turn.knowledge.entries[topic_id]
    turn.session.last_topic = topic_id
    turn.session.unsure_streak = 0
    return Reply(
        text=entry.answer,
        intent="answer",
        topic=topic_id,
        confidence=confidence,
        candidates=candidates or [topic_id],
    )


def clarify(turn: Turn, result: MatchResult) -> Reply:
    """Offer the closest topics as numbered choices."""
    choices = result.choices()
    options = [Option(turn.knowledge.entries[t].question, f"faq:{t}") for t in choices]
    options.append(Option("都不是，转人工客服", "intent:handoff"))
    return Reply(
        text="我不太确定您问的是哪一个，请选择最接近的问题：",
        intent="clarify",
        options=options,
        confidence=result.confidence,
        candidates=choices,
    )
