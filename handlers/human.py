"""A person has the conversation: the message goes to its ticket and the bot stays silent, except to hand the
conversation back when the merchant ends it; a resolved ticket takes the rating or a thank-you."""

import re

from core.messages import Reply
from handlers import greeting
from handlers.turn import Turn
from ticketing import flows as ticket_flows
from ticketing import lifecycle
from ticketing import service as ticket_service
from ticketing.models import ACTIVE

_END = re.compile(
    r"^(结束|结束人工|结束对话|结束服务|取消人工|取消转人工|不用人工了|不需要人工了|退出人工)[了啦吧。.!！]*$"
)


def with_person(turn: Turn) -> bool:
    """True when a person has the conversation (its ticket is new, assigned or waiting); nothing is written."""
    if turn.db_session is None:
        return False
    ticket = ticket_service.get_unclosed_for(
        db_session=turn.db_session, channel=turn.message.channel, user_id=turn.message.user_id
    )
    return ticket is not None and ticket.state in ACTIVE


def wants_bot(turn: Turn) -> bool:
    """True when the merchant ends the human conversation ("结束", "取消人工")."""
    return bool(_END.match(turn.folded))


def relay(turn: Turn) -> Reply | None:
    """Give the message to the conversation's ticket; None when no ticket wants it (the bot answers)."""
    outcome = ticket_flows.route_merchant_message(
        db_session=turn.db_session, channel=turn.message.channel, user_id=turn.message.user_id, text=turn.text
    )
    if outcome.action == "none":
        return None
    if outcome.action == "appended" and wants_bot(turn):
        lifecycle.hand_back_to_bot(
            db_session=turn.db_session, ticket_id=outcome.ticket.id, notify=False, reason="merchant_ended"
        )
        reply = greeting.welcome(turn)
        reply.text = "已结束人工服务，您的工单已关闭。" + reply.text
        return reply
    return Reply(text=outcome.reply or "", intent="human")
