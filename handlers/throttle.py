"""A polite pause for an identity that sends more than its per-minute share of messages (counted in the store, so
shared by every worker); the message is still recorded in the conversation, with intent "throttled".

The limit comes before everything else, the relay to a person included: while a ticket is open, a flood is not
appended to it, and the merchant is asked to slow down at most once a minute (the bot otherwise stays silent there).
"""

import logging
import time

from core import metrics
from core.messages import Reply
from core.store import best_effort
from handlers import human
from handlers.turn import Turn

log = logging.getLogger(__name__)

THROTTLED_TEXT = "您发送消息的速度有点快，我需要稍作休息。请一分钟后再发，您刚才的消息已经记录下来了。"
THROTTLED_HUMAN_TEXT = (
    "您发送消息的速度太快了，请稍慢一些。这段时间内的消息不会转给人工客服，请一分钟后把要说的内容合并成一条再发送。"
)
NOTICE_SECONDS = 60


def over_limit(turn: Turn) -> bool:
    """Count the message; True once this identity sent more than `turn.rate_limit` this minute."""
    if not turn.rate_limit:
        return False
    key = f"rate:{turn.message.channel}:{turn.message.user_id}:{int(time.time() // 60)}"
    count = best_effort(lambda: turn.store.incr(key, ttl=120), 0, what="rate limit")
    return count > turn.rate_limit


def _first_notice(turn: Turn) -> bool:
    """True for the first throttled message of this identity in NOTICE_SECONDS (logged once, not per message)."""
    key = f"throttle-notice:{turn.message.channel}:{turn.message.user_id}"
    first = best_effort(lambda: turn.store.add(key, "1", ttl=NOTICE_SECONDS), True, what="throttle notice")
    if first:
        log.info("throttled %s:%s (intent throttled)", turn.message.channel, turn.message.user_id)
    return first


def pause(turn: Turn) -> Reply:
    """Ask the merchant to slow down; in a conversation with a person, once a minute and nothing to the ticket."""
    metrics.THROTTLED.inc()
    first = _first_notice(turn)
    if human.with_person(turn):
        return Reply(text=THROTTLED_HUMAN_TEXT if first else "", intent="throttled")
    return Reply(text=THROTTLED_TEXT, intent="throttled")
