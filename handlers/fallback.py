"""What the bot says when it cannot tell what the merchant needs; after repeated misses, a person takes over."""

from core.messages import Reply
from core.text import units
from handlers import handoff, payloads
from handlers.turn import Turn

# Misses in a row after which the merchant is handed to a person.
UNSURE_BEFORE_HANDOFF = 2
NOT_UNDERSTOOD = (
    "抱歉，这个问题我暂时回答不了。我主要解答发票开具、作废、红冲、查验、抵扣、登录和税控设备等问题。"
    "您可以换个说法（最好带上系统的报错原文），或转人工客服。"
)
OFF_TOPIC = (
    "抱歉，这个不在我能帮忙的范围内，我只解答发票开具、作废、红冲、查验、抵扣、登录和税控设备等问题。"
    "如需真人帮助，可以回复“转人工”。"
)


def is_empty(turn: Turn) -> bool:
    """True when the message has no readable text (emoji, punctuation, control characters only)."""
    return not units(turn.folded)


def empty(turn: Turn) -> Reply:
    """Reply to a message with no readable text."""
    return Reply(
        text="没有看到您的文字内容。请用文字描述您遇到的发票问题，或发送发票号码查询状态。",
        intent="fallback",
        options=[payloads.FAQ_MENU, payloads.HANDOFF],
    )


def miss(
    turn: Turn, *, confidence: float | None = None, candidates: list[str] | None = None, in_domain: bool = True
) -> Reply:
    """Say so plainly and offer a human; hand off after UNSURE_BEFORE_HANDOFF in-domain misses in a row (off-topic
    chatter, such as the weather or a joke, only offers a person)."""
    if not in_domain:
        options = [payloads.HANDOFF, payloads.FAQ_MENU]
        return Reply(text=OFF_TOPIC, intent="fallback", options=options, confidence=confidence, candidates=[])
    turn.state.unsure_streak += 1
    if turn.state.unsure_streak >= UNSURE_BEFORE_HANDOFF:
        return handoff.start(turn, opening="抱歉，我连续两次没能理解您的问题，已为您转接人工客服。")
    options = [payloads.HANDOFF, payloads.FAQ_MENU]
    return Reply(
        text=NOT_UNDERSTOOD, intent="fallback", options=options, confidence=confidence, candidates=candidates or []
    )
