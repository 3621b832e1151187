"""A person has the conversation: the message goes to its ticket and the bot acknowledges it now and then (the
ticket number, that staff will see it, when to expect an answer), hands the conversation back when the merchant ends
it; a resolved ticket takes the rating or a thank-you."""

import re
import time

from core.messages import Reply
from core.settings import get_settings
from handlers import greeting
from handlers.turn import Turn
from knowledge import wording
from ticketing import flows as ticket_flows
from ticketing import lifecycle
from ticketing import service as ticket_service
from ticketing.models import ACTIVE, Ticket
from ticketing.sla import business_status

_END = re.compile(
    r"^(结束|结束人工|结束对话|结束服务|取消人工|取消转人工|不用人工了|不需要人工了|退出人工)[了啦吧。.!！]*$"
)
clock = time.time  # the wall clock the acknowledgement pauses are measured with (tests move it)


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


def asks_for_someone(turn: Turn) -> bool:
    """True when a waiting merchant asks whether anyone is there or for a person again ("有人吗", "人呢", "转人工")."""
    return wording.is_nudge(turn.text) or wording.wants_person(turn.text)


def acknowledged(turn: Turn) -> None:
    """Remember that the merchant was just told that staff will see the conversation."""
    turn.state.human_ack_at = clock()


def relay(turn: Turn) -> Reply | None:
    """Give the message to the conversation's ticket; None when no ticket wants it (the bot answers)."""
    outcome = ticket_flows.route_merchant_message(
        db_session=turn.db_session,
        channel=turn.message.channel,
        user_id=turn.message.user_id,
        text=turn.text,
    )
    if outcome.action == "none":
        return None
    if outcome.action == "appended" and wants_bot(turn):
        lifecycle.hand_back_to_bot(
            db_session=turn.db_session, ticket_id=outcome.ticket.id, notify=False, reason="merchant_ended"
        )
        turn.state.human_ack_at = turn.state.human_nudge_at = None
        reply = greeting.welcome(turn)
        reply.text = "已结束人工服务，您的工单已关闭。" + reply.text
        return reply
    if outcome.action == "appended":
        return acknowledge(turn, outcome.ticket)
    if outcome.reply:
        acknowledged(turn)
    return Reply(text=outcome.reply or "", intent="human")


def acknowledge(turn: Turn, ticket: Ticket) -> Reply:
    """Tell the merchant the message reached the ticket, at most every HUMAN_ACK_SECONDS; "有人吗" or another 转人工
    is answered at most every HUMAN_NUDGE_ACK_SECONDS, counted from the last such answer only (so the first one after
    the handoff is never met with silence); silence in between."""
    settings = get_settings()
    nudge = asks_for_someone(turn)
    if nudge:
        pause, last = settings.human_nudge_ack_seconds, turn.state.human_nudge_at
    else:
        pause, last = settings.human_ack_seconds, turn.state.human_ack_at
    if last is not None and clock() - last < pause:
        return Reply(text="", intent="human")
    acknowledged(turn)
    if nudge:
        turn.state.human_nudge_at = turn.state.human_ack_at
    expected = business_status(priority=ticket.priority).text
    return Reply(
        text=f"已收到，您的消息已转入工单 {ticket.number}，客服会看到并尽快回复您。{expected}"
        "如想结束人工服务，回复“结束”。",
        intent="human",
    )
