"""Hand the conversation to a human."""

import re

from bot.messages import Reply
from handlers.base import Turn
from knowledge.text import fold

_HUMAN = re.compile(
    r"转人工|人工客服|人工服务|找人工|要人工|接人工|真人|人工|客服电话|联系客服|找客服|投诉|举报你们|"
    r"叫你们领导|找你们领导|不要机器人|别用机器人|机器人听不懂"
)


def wants_human(text: str) -> bool:
    """True when the merchant asks for a person or complains."""
    return bool(_HUMAN.search(fold(text)))


def handle(turn: Turn) -> Reply:
    """Promise a human; tickets and queues arrive with the ticketing module."""
    turn.session.unsure_streak = 0
    complaint = "投诉" in turn.text
    opening = "非常抱歉给您带来不便，您的投诉我们会认真处理。" if complaint else "好的，正在为您转接人工客服。"
    return Reply(
        text=f"{opening}请把问题、报错截图的文字内容或发票号码一并发给我，客服接入后会直接看到，不用重复描述。",
        intent="handoff",
    )
