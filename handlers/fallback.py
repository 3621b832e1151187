"""What the bot says when it cannot tell what the merchant needs."""

from core.messages import Option, Reply
from handlers.turn import Turn

HANDOFF_OPTION = Option("转人工客服", "intent:handoff")
MENU_OPTION = Option("看看我能回答哪些问题", "menu:faq")


def handle(turn: Turn, *, confidence: float | None = None, candidates: list[str] | None = None) -> Reply:
    """Say so plainly and offer a human; the router hands off after repeated misses."""
    turn.session.unsure_streak += 1
    text = (
        "抱歉，这个问题我暂时回答不了。我主要解答发票开具、作废、红冲、查验、抵扣、登录和税控设备等问题。"
        "您可以换个说法（最好带上系统的报错原文），或转人工客服。"
    )
    options = [HANDOFF_OPTION, MENU_OPTION]
    return Reply(text=text, intent="fallback", options=options, confidence=confidence, candidates=candidates or [])


def empty(turn: Turn) -> Reply:
    """Reply to a message with no readable text."""
    return Reply(
        text="没有看到您的文字内容。请用文字描述您遇到的发票问题，或发送发票号码查询状态。",
        intent="fallback",
        options=[MENU_OPTION, HANDOFF_OPTION],
    )
